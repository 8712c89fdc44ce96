/**
 * Peers that misbehave the way a hostile network does, for storm tests and
 * `bench/storm.ts`: each of `concurrency` loops opens one connection after
 * another until the time is up, and treats it by `pattern`. On `node:net`;
 * run it on Node (the fixture `fixtures/hostile_peers.ts` runs it as a
 * process of its own): Bun's `resetAndDestroy()` sends FIN, not RST.
 *
 * - `reset`: connect, then reset at once (`SO_LINGER` 0: RST, no FIN), as
 *   port scanners and some load balancers' health checks do.
 * - `close`: connect, then close without sending a byte (FIN).
 * - `half-close`: connect, half-close at once (FIN, reading on), and wait for
 *   the server to close its side.
 * - `stall-header`: connect, send part of a frame header, and send nothing
 *   more; wait for the server to close the connection (its frame timeout).
 *
 * @module
 */

import * as net from "node:net";

/** What each hostile connection does; see the module doc. */
export type HostilePattern = "reset" | "close" | "half-close" | "stall-header";

/** Every pattern, in the order tests take them. */
export const HOSTILE_PATTERNS: readonly HostilePattern[] = ["reset", "close", "half-close", "stall-header"];

/** Options of {@link runHostilePeers}. */
export interface HostileOptions {
  /** Server port. */
  port: number;
  /** Server host. Default `127.0.0.1`. */
  host?: string;
  /** What each connection does. */
  pattern: HostilePattern;
  /** Connections in flight at once. */
  concurrency: number;
  /** Milliseconds to keep opening connections; those still open then are reset. */
  durationMs: number;
  /** Stop after this many connections (all of them then run their course). Default: no limit. */
  count?: number | undefined;
}

/** What a run did. */
export interface HostileReport {
  pattern: HostilePattern;
  /** Connections established (each then treated by the pattern). */
  connections: number;
  /** Attempts that failed to connect (refused, reset during the handshake). */
  connectFailures: number;
  /** Connections the server closed first (`half-close`, `stall-header`). */
  closedByServer: number;
  /** Connections still open at the end, reset then (`half-close`, `stall-header`). */
  cutAtEnd: number;
}

/**
 * Open connections by `pattern` until `durationMs` has passed.
 *
 * @param options Where, what, how many at once, how long.
 * @returns Counts of what happened.
 */
export async function runHostilePeers(options: HostileOptions): Promise<HostileReport> {
  const host = options.host ?? "127.0.0.1";
  const report: HostileReport = { pattern: options.pattern, connections: 0, connectFailures: 0, closedByServer: 0, cutAtEnd: 0 };
  /** Every socket not yet closed, and those of them that connected. */
  const open = new Set<net.Socket>();
  const established = new Set<net.Socket>();
  let over = false;
  let endTimer: ReturnType<typeof setTimeout> | undefined;
  const ended = new Promise<void>((resolve) => {
    endTimer = setTimeout(() => {
      over = true;
      resolve();
    }, options.durationMs);
  });

  /** One connection: resolves when it is over, however it ends. */
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ host, port: options.port, allowHalfOpen: true });
      let connected = false;
      let serverClosed = false;
      open.add(socket);
      socket.on("error", () => {});
      socket.on("end", () => {
        serverClosed = true;
        socket.destroy();
      });
      socket.on("close", () => {
        open.delete(socket);
        established.delete(socket);
        if (!connected) report.connectFailures++;
        else if (serverClosed) report.closedByServer++;
        resolve();
      });
      socket.on("connect", () => {
        connected = true;
        established.add(socket);
        report.connections++;
        switch (options.pattern) {
          case "reset":
            socket.resetAndDestroy();
            break;
          case "close":
            socket.destroy();
            break;
          case "half-close":
            socket.end();
            break;
          case "stall-header":
            // One to three bytes of a four-byte header: the frame is started, never finished.
            socket.write(new Uint8Array([0, 7, 0].slice(0, 1 + (report.connections % 3))));
            break;
        }
      });
    });

  const count = options.count ?? Number.POSITIVE_INFINITY;
  let started = 0;
  const loop = async (): Promise<void> => {
    while (!over && started < count) {
      started++;
      await Promise.race([once(), ended]);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, loop));
  } finally {
    clearTimeout(endTimer);
    report.cutAtEnd = established.size;
    for (const socket of open) socket.resetAndDestroy();
  }
  // A copy: connections cut at the end report their close later, and are counted as cut.
  return { ...report };
}
