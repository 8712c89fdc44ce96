/**
 * A server's counters: what {@link Server.stats} returns, and the tally a
 * server keeps of its closed sessions so that totals survive them.
 *
 * @module
 */

import { CLOSE_REASONS, type CloseReason } from "./close_reason.ts";
import type { BusStats } from "./cluster/cluster.ts";
import type { Session, SessionCounters } from "./session.ts";

/**
 * A snapshot of a server's counters. Totals run from the start of the server
 * and include the sessions still open; "now" values are what they are at the
 * moment of the call.
 *
 * @example
 * ```ts
 * import { serve, type ServerStats } from "@tlvkit/tlvkit";
 * const server = await serve({ port: 0 });
 * const stats: ServerStats = server.stats();
 * console.log(stats.openSessions, stats.framesIn, stats.closes["peer-closed"]); // 0 0 0
 * await server.close();
 * ```
 */
export interface ServerStats {
  /** Milliseconds since the server started (by its clock). */
  uptime: number;
  /** Sessions open now. */
  openSessions: number;
  /** Bytes queued and not yet taken by the kernel, summed over the open sessions, now. */
  queuedBytes: number;
  /**
   * Sessions accepted since the start. Connections closed at once (past
   * `maxConnections`, or during shutdown) are not counted here, only in
   * {@link ServerStats.closes}.
   */
  sessionsOpened: number;
  /**
   * Connections whose peer was gone (reset) before the server could accept
   * them, since the start: port scanners and health checks that close with
   * `SO_LINGER` 0 make them. Accepting goes on at once; they are not sessions
   * and are not in {@link ServerStats.closes}. Counted the same way on every
   * runtime.
   */
  connectionsAborted: number;
  /**
   * Accepts that failed for any other reason since the start (out of file
   * descriptors, say): the server backs off briefly and keeps accepting.
   */
  acceptErrors: number;
  /** Frames received since the start. */
  framesIn: number;
  /** Frames sent since the start. */
  framesOut: number;
  /** Bytes received since the start. */
  bytesIn: number;
  /** Bytes sent (handed to the transport) since the start. */
  bytesOut: number;
  /**
   * Sessions closed since the start, by reason; every reason is present
   * (0 when it never happened). Connections refused at the connection limit
   * count as `connection-limit`.
   */
  closes: Record<CloseReason, number>;
  /**
   * The cluster bus since the start: messages this node sent to other nodes,
   * messages from other nodes delivered here, and messages not sent because
   * the bus was down. All 0 for a server alone.
   */
  bus: BusStats;
}

function addCounters(into: SessionCounters, from: SessionCounters): void {
  into.framesIn += from.framesIn;
  into.framesOut += from.framesOut;
  into.bytesIn += from.bytesIn;
  into.bytesOut += from.bytesOut;
}

/** The counters of the sessions a server has seen close, and how many it opened. */
export class StatsTally {
  readonly #startedAt: number;
  readonly #retired: SessionCounters = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
  readonly #closes = Object.fromEntries(CLOSE_REASONS.map((reason) => [reason, 0])) as Record<CloseReason, number>;
  #opened = 0;
  #aborted = 0;
  #acceptErrors = 0;

  /** @param startedAt The clock reading the uptime counts from. */
  constructor(startedAt: number) {
    this.#startedAt = startedAt;
  }

  /** Count a session the server accepted. */
  opened(): void {
    this.#opened++;
  }

  /** Count a connection whose peer was gone before it could be accepted. */
  acceptAborted(): void {
    this.#aborted++;
  }

  /** Count an accept that failed for another reason. */
  acceptFailed(): void {
    this.#acceptErrors++;
  }

  /**
   * Keep a closed session's counters and its reason.
   *
   * @param session The session that closed.
   * @param reason Its one close reason.
   */
  closed(session: Session, reason: CloseReason): void {
    addCounters(this.#retired, session.counters);
    this.#closes[reason]++;
  }

  /**
   * The totals so far, with the open sessions' counters added.
   *
   * @param now The clock reading now.
   * @param open The sessions open now.
   * @returns A fresh snapshot.
   */
  snapshot(now: number, open: Iterable<Session>, bus: BusStats = { published: 0, delivered: 0, dropped: 0 }): ServerStats {
    const stats: ServerStats = {
      uptime: now - this.#startedAt,
      openSessions: 0,
      queuedBytes: 0,
      sessionsOpened: this.#opened,
      connectionsAborted: this.#aborted,
      acceptErrors: this.#acceptErrors,
      ...this.#retired,
      closes: { ...this.#closes },
      bus,
    };
    for (const session of open) {
      stats.openSessions++;
      stats.queuedBytes += session.queuedBytes;
      addCounters(stats, session.counters);
    }
    return stats;
  }
}
