/**
 * The defaults that the session, server, client and command line share, in
 * one place. Each option's JSDoc states its default for users; this is where
 * the code takes it from.
 *
 * @module
 */

/** Address a server listens on and a client connects to. */
export const DEFAULT_HOST = "127.0.0.1";
/** TCP port of `serve` and `connect`, and of the command line. */
export const DEFAULT_PORT = 10086;
/** Unsent bytes per session past which reading stops (backpressure). */
export const DEFAULT_HIGH_WATER_MARK = 64 * 1024;
/** Milliseconds a graceful close waits for the peer's close. */
export const DEFAULT_LINGER_TIMEOUT = 2000;
/** Milliseconds a server gives a started frame to complete (a client: 0, never). */
export const DEFAULT_FRAME_TIMEOUT = 30_000;
/** Milliseconds `server.close()` delivers owed replies before aborting. */
export const DEFAULT_DRAIN_TIMEOUT = 5000;
/** Sessions a server keeps open at once. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Milliseconds `tlvkit send` waits for its replies. */
export const DEFAULT_SEND_TIMEOUT = 10_000;

/**
 * The low-water mark that goes with a high-water mark: half the default high
 * mark, and never above the high mark given.
 *
 * @param highWaterMark The high-water mark in use.
 * @returns Bytes below which reading resumes.
 */
export function defaultLowWaterMark(highWaterMark: number): number {
  return Math.min(DEFAULT_HIGH_WATER_MARK / 2, highWaterMark);
}

/**
 * The hard limit that goes with a high-water mark: 1 MiB, and never below
 * the high mark given.
 *
 * @param highWaterMark The high-water mark in use.
 * @returns Unsent bytes past which a push closes the session.
 */
export function defaultHardLimit(highWaterMark: number): number {
  return Math.max(1024 * 1024, highWaterMark);
}
