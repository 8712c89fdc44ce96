/**
 * What a failed accept means, decided in one place for every adapter and for
 * the server that counts and logs it.
 *
 * - **`peer-gone`**: the peer left (reset) between its handshake and the
 *   accept, as port scanners and health checks that close with `SO_LINGER` 0
 *   do. Nothing is wrong with the listener: accept again at once. Deno's
 *   `accept()` rejects with `NotConnected` for such a connection; Node and Bun
 *   accept it and cannot name its peer, and their adapters report it the
 *   same way ({@link peerGoneError}). Linux's `accept(2)` also passes on
 *   pending network errors of the new connection (`EPROTO`, `EHOSTUNREACH`,
 *   ...) and asks callers to retry them like `EAGAIN`: they belong here too.
 * - **`exhausted`**: out of descriptors, buffers or memory. Accepting again
 *   at once would spin; back off and let sessions close.
 * - **`unexpected`**: anything else. Treated like `exhausted` (back off), since
 *   a retry that fails at once would spin too.
 *
 * @module
 */

import { type SocketError, socketError } from "./_socket_error.ts";

/** How a listener reacts to a failed accept (see the module doc). */
export type AcceptFailureKind = "peer-gone" | "exhausted" | "unexpected";

const PEER_GONE = new Set([
  "ECONNABORTED",
  "ECONNRESET",
  "ENOTCONN",
  // accept(2) on Linux: "already-pending network errors on the new socket", to be retried.
  "EPROTO",
  "ENOPROTOOPT",
  "EHOSTDOWN",
  "ENONET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
]);

const EXHAUSTED = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/**
 * Classify a failed accept by its system code.
 *
 * @param code The error's system code (`ENOTCONN`, `EMFILE`, ...), if any.
 * @returns `peer-gone` (accept again at once), `exhausted` or `unexpected`
 * (back off first).
 */
export function acceptFailureKind(code: string | undefined): AcceptFailureKind {
  if (code === undefined) return "unexpected";
  if (PEER_GONE.has(code)) return "peer-gone";
  if (EXHAUSTED.has(code)) return "exhausted";
  return "unexpected";
}

/**
 * The error an adapter reports for a connection it accepted whose peer is
 * already gone (its address can no longer be read): code `ENOTCONN`, as
 * Deno's `accept()` reports the same case.
 *
 * @param host The listener's host.
 * @param port The listener's port.
 * @returns The error to pass to `onAcceptError`.
 */
export function peerGoneError(host: string, port: number): SocketError {
  return socketError("accept on", host, port, "ENOTCONN", new Error("The peer reset the connection before it was accepted"));
}
