/**
 * One way to describe socket failures across runtimes: an `Error` with a
 * system `code` and a message naming what failed and where; and the ways the
 * adapters pass on what a caller's handler threw. Pure; shared by the
 * adapters.
 *
 * @module
 */

import { formatHostPort } from "./_socket_address.ts";

const DESCRIPTIONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this machine",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset by peer",
  ECONNABORTED: "connection aborted",
  ENOTCONN: "the peer is no longer connected",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  ENOBUFS: "no buffer space available",
  ENOMEM: "out of memory",
  EPIPE: "broken pipe",
};

/** An error from a socket operation, with the system code when known. */
export interface SocketError extends Error {
  /** System error code (`ECONNREFUSED`, `EADDRINUSE`, ...), when known. */
  code?: string;
}

/**
 * Build the error reported for a failed socket operation.
 *
 * @param action What was attempted, e.g. `"listen on"` or `"connect to"`.
 * @param host Host of the attempt.
 * @param port Port of the attempt.
 * @param code System error code, when known.
 * @param cause The runtime's own error.
 */
export function socketError(action: string, host: string, port: number, code: string | undefined, cause: unknown): SocketError {
  const detail = code !== undefined && DESCRIPTIONS[code] !== undefined
    ? `${DESCRIPTIONS[code]} (${code})`
    : cause instanceof Error ? cause.message : String(cause);
  const error: SocketError = new Error(`Cannot ${action} ${formatHostPort(host, port)}: ${detail}`, { cause });
  error.name = "SocketError";
  if (code !== undefined) error.code = code;
  return error;
}

/** The system code of an error thrown by a runtime, when it has one. */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && code !== "") return code;
  // Deno throws classes named after the condition.
  const name = (error as { name?: unknown }).name;
  switch (name) {
    case "AddrInUse":
      return "EADDRINUSE";
    case "AddrNotAvailable":
      return "EADDRNOTAVAIL";
    case "ConnectionRefused":
      return "ECONNREFUSED";
    case "ConnectionReset":
      return "ECONNRESET";
    case "ConnectionAborted":
      return "ECONNABORTED";
    case "NotConnected":
      return "ENOTCONN";
    case "BrokenPipe":
      return "EPIPE";
    case "PermissionDenied":
      return "EACCES";
    case "NotCapable":
      return "EPERM";
    case "TimedOut":
      return "ETIMEDOUT";
    default:
      return undefined;
  }
}

/** Give a socket error its `code` when the runtime left it out but it can be told. */
export function withCode(error: Error): SocketError {
  const socketErr: SocketError = error;
  if (socketErr.code === undefined) {
    const code = errorCode(error);
    if (code !== undefined) socketErr.code = code;
  }
  return socketErr;
}

/** `value` as an `Error` (what a handler threw need not be one). */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/**
 * Throw `error` from a microtask, outside the runtime's socket callbacks and
 * any promise chain: an uncaught exception, as on Node, never an unhandled
 * rejection.
 */
export function rethrowAsync(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}
