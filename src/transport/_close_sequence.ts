/**
 * How a connection closes, as the adapters track it: one state, moved only
 * along {@link nextState}'s table. Until the connection is closed, each way
 * is open or half-closed (a FIN sent or received); what an adapter does on
 * entering a state (send FIN, close the socket, report `onClose`) is its own.
 * Pure; shared by the adapters.
 *
 * ```text
 *             end()                   FIN out
 *   OPEN ──────────────▶ ENDING ───────────────▶ FIN_SENT
 *    │                     │                        │
 *    │ peer's FIN          │ peer's FIN             │ peer's FIN
 *    ▼      end()          ▼          FIN out       ▼
 *   PEER_ENDED ─────▶ ENDING_AFTER_PEER ─────────▶ ENDED
 *
 *   any state ── close (abort, failure, the runtime's close) ──▶ CLOSED
 * ```
 *
 * @module
 */

/** Both ways open. */
export const OPEN = 0;
/** The peer's FIN arrived (`onEnd` reported); writing goes on. */
export const PEER_ENDED = 1;
/** `end()` was called: FIN follows the backlog; writes are no-ops. */
export const ENDING = 2;
/** `end()` was called after the peer's FIN: FIN follows the backlog. */
export const ENDING_AFTER_PEER = 3;
/** Our FIN is out, the peer's not seen yet. */
export const FIN_SENT = 4;
/** Both FINs: nothing more can come either way; the socket is to close. */
export const ENDED = 5;
/** Closed: calls are no-ops and events are swallowed; `onClose` is, or is about to be, reported. */
export const CLOSED = 6;
/**
 * One of the states above. A plain number, in this order: a state after
 * `PEER_ENDED` takes no more writes. (A union of the constants would let
 * TypeScript narrow a field across calls that change it.)
 */
export type CloseState = number;

/** `end()` was called. */
export const END_CALLED = 0;
/** Our FIN went out (the backlog before it is written). */
export const FIN_OUT = 1;
/** The peer's FIN arrived. */
export const PEER_FIN = 2;
/** The connection closed: aborted, failed, or closed by the runtime. */
export const CLOSE = 3;
/** What moves the close sequence on. */
export type CloseStep = typeof END_CALLED | typeof FIN_OUT | typeof PEER_FIN | typeof CLOSE;

/** In each state (row), the state each step (column) leads to; leading back to the same state, it changes nothing. */
const NEXT: readonly (readonly CloseState[])[] = [
  //                       end() called       FIN out     peer's FIN         close
  /* OPEN */              [ENDING,            OPEN,       PEER_ENDED,        CLOSED],
  /* PEER_ENDED */        [ENDING_AFTER_PEER, PEER_ENDED, PEER_ENDED,        CLOSED],
  /* ENDING */            [ENDING,            FIN_SENT,   ENDING_AFTER_PEER, CLOSED],
  /* ENDING_AFTER_PEER */ [ENDING_AFTER_PEER, ENDED,      ENDING_AFTER_PEER, CLOSED],
  /* FIN_SENT */          [FIN_SENT,          FIN_SENT,   ENDED,             CLOSED],
  /* ENDED */             [ENDED,             ENDED,      ENDED,             CLOSED],
  /* CLOSED */            [CLOSED,            CLOSED,     CLOSED,            CLOSED],
];

/**
 * The state `step` leads to from `state`: `state` itself when the step
 * changes nothing there (a second `end()`, anything once closed).
 *
 * @param state The state now.
 * @param step What happened.
 * @returns The state after it.
 */
export function nextState(state: CloseState, step: CloseStep): CloseState {
  return NEXT[state]![step]!;
}
