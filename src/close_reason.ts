/**
 * Why a session closed: exactly one of these is reported, once, per session
 * (docs/protocol.md#close-reasons).
 *
 * @module
 */

/**
 * The reason a session closed.
 *
 * | reason | meaning |
 * | --- | --- |
 * | `peer-closed` | the peer ended the connection (after every reply it was owed was sent) |
 * | `reset` | the connection was reset (ECONNRESET, ECONNABORTED, EPIPE) |
 * | `frame-too-large` | the peer announced a body over `maxBody` |
 * | `frame-timeout` | a started frame did not complete in time |
 * | `idle-timeout` | no byte moved either way for the idle timeout |
 * | `slow-consumer` | a push found the session's queue over its hard limit |
 * | `connection-limit` | the server was at its connection limit |
 * | `server-shutdown` | the server is shutting down |
 * | `closed-by-app` | the application closed it |
 * | `error` | any other failure |
 *
 * @example
 * ```ts
 * import type { CloseReason } from "@tlvkit/tlvkit";
 * const reason: CloseReason = "peer-closed";
 * ```
 */
export type CloseReason =
  | "peer-closed"
  | "reset"
  | "frame-too-large"
  | "frame-timeout"
  | "idle-timeout"
  | "slow-consumer"
  | "connection-limit"
  | "server-shutdown"
  | "closed-by-app"
  | "error";

/** Every close reason, in the order docs/protocol.md#close-reasons lists them. */
export const CLOSE_REASONS: readonly CloseReason[] = [
  "peer-closed",
  "reset",
  "frame-too-large",
  "frame-timeout",
  "idle-timeout",
  "slow-consumer",
  "connection-limit",
  "server-shutdown",
  "closed-by-app",
  "error",
];
