/**
 * Hostile connection patterns against the library server, on whichever
 * runtime runs this file: peers that connect and reset, connect and close
 * without a byte, half-close before sending, stall inside a header, or hold
 * idle connections up to the connection limit. The hostile peers run as a
 * process of their own (`fixtures/hostile_peers.ts`, on Node);
 * ordinary clients in this process connect, make round trips and close,
 * again and again, the whole time. Each case checks that the ordinary clients
 * are served without a failure, that no session is left behind, and that
 * memory stays bounded (the live heap after a full collection, and RSS).
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { after, describe, it } from "node:test";
import { createLogger, echo, type Logger, serve, type Server, type ServerOptions } from "../mod.ts";
import { detectRuntime, loadTransport } from "../src/transport/detect.ts";
import type { Connection } from "../src/transport/types.ts";
import { until, within } from "./_async.ts";
import { collectGarbage, noGcReason } from "./_gc.ts";
import { HOSTILE_PATTERNS, type HostilePattern, type HostileReport } from "./_hostile_peers.ts";
import { OrdinaryClients, type PhaseCount } from "./_ordinary_clients.ts";
import { ROOT, runtimeCommand, start, stopAll } from "./_processes.ts";

const RUNTIME = detectRuntime();
const MiB = 1024 * 1024;
/**
 * How far the live JavaScript heap (after a full collection) may grow across
 * a storm that should leave nothing behind. Thousands of connections go
 * through each storm: one retained session each would be tens of MiB.
 */
const HEAP_GROWTH_LIMIT = 8 * MiB;
/**
 * How far RSS may grow: a looser backstop for memory outside the JavaScript
 * heap. The first storm of a process sizes the heap for its garbage rate
 * (seen: +57 MiB on Node within a full suite run), so RSS says less than the
 * live heap about what is kept.
 */
const RSS_GROWTH_LIMIT = 128 * MiB;
const FIXTURE = runtimeCommand("node", "tests/fixtures/hostile_peers.ts");
/** Ordinary clients at once, and their round trips per connection. */
const WORKERS = 4;
const ROUNDS = 20;

after(stopAll);

/** A logger that keeps its lines at `level` and above, to check what a storm logged. */
function recordingLogger(level: "debug" | "warn"): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger(level, (line) => lines.push(line)), lines };
}

async function echoServer(options: ServerOptions): Promise<Server> {
  const server = await serve({ port: 0, ...options });
  server.fallback(echo);
  return server;
}

/** Run the hostile-peers fixture to its end and return its report. */
async function hostilePeers(port: number, pattern: HostilePattern, args: string[] = []): Promise<HostileReport> {
  const child = start([...FIXTURE, "--port", String(port), "--pattern", pattern, ...args]);
  const { code } = await within(child.exited, 60_000, `hostile peers (${pattern}) to finish`);
  assert.equal(code, 0, `hostile peers exited ${code}: ${child.stderr}`);
  return JSON.parse(child.stdout.trim().split("\n").at(-1)!) as HostileReport;
}

interface Memory {
  rss: number;
  heapUsed: number;
}

/** RSS and the live heap after a full collection (where the runtime allows one). */
async function memory(): Promise<Memory> {
  if (noGcReason === undefined) await collectGarbage();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed };
}

/** Check that memory grew by less than the limits since `before`, printing the figures. */
async function assertMemoryBounded(before: Memory, what: string): Promise<void> {
  const after = await memory();
  const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
  console.log(`[${RUNTIME}] ${what}: live heap ${mib(before.heapUsed)} before, ${mib(after.heapUsed)} after; ` +
    `RSS ${mib(before.rss)} before, ${mib(after.rss)} after`);
  assert.ok(after.rss - before.rss < RSS_GROWTH_LIMIT, `${what}: RSS grew by ${mib(after.rss - before.rss)}, limit ${mib(RSS_GROWTH_LIMIT)}`);
  if (noGcReason !== undefined) {
    console.log(`[${RUNTIME}] ${what}: live heap check skipped: ${noGcReason}`);
    return;
  }
  const growth = after.heapUsed - before.heapUsed;
  assert.ok(growth < HEAP_GROWTH_LIMIT, `${what}: the live heap grew by ${mib(growth)}, limit ${mib(HEAP_GROWTH_LIMIT)}`);
}

function describeCounts(counts: Map<string, PhaseCount>): string {
  return [...counts].map(([phase, c]) => `${phase} ${c.roundTrips} round trips, ${c.connects} connects in ${c.ms} ms`).join("; ");
}

describe(`hostile peers against the server on ${RUNTIME}`, () => {
  it("counts connections reset before their accept as aborted, opens no session for them and accepts on at once", async () => {
    const { logger, lines } = recordingLogger("debug");
    const errors: Error[] = [];
    const server = await echoServer({ logger, onError: (error) => errors.push(error) });
    try {
      // spawnSync blocks this process, server included: the peers' 40 connections
      // complete in the kernel and are reset before the server gets to accept them.
      const result = spawnSync(FIXTURE[0]!, [...FIXTURE.slice(1), "--port", String(server.address.port), "--pattern", "reset", "--count", "40", "--concurrency", "4", "--duration", "20000"], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.equal(result.status, 0, `hostile peers: ${result.stderr}`);
      const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as HostileReport;
      assert.equal(report.connections, 40);
      await until(() => server.stats().connectionsAborted === 40, 10_000, `40 aborted connections (stats: ${JSON.stringify(server.stats())})`);
      const stats = server.stats();
      assert.equal(stats.sessionsOpened, 0, "no session for a connection that was gone");
      assert.equal(stats.acceptErrors, 0);
      assert.deepEqual(errors, [], "onError is not called for a peer that left");
      assert.deepEqual(lines.filter((line) => / (ERROR|WARN) /.test(line)), [], "nothing logged above debug");
      const ordinary = new OrdinaryClients({ port: server.address.port, workers: 1, roundsPerConnection: 3, timeoutMs: 5000 });
      ordinary.start("after");
      await until(() => (ordinary.counts().get("after")?.roundTrips ?? 0) >= 3, 10_000, "an ordinary client served after the aborted connections");
      await ordinary.stop();
      assert.deepEqual(ordinary.failures, []);
    } finally {
      await server.close({ drainTimeout: 100 });
    }
  });

  for (const pattern of HOSTILE_PATTERNS) {
    it(`serves ordinary clients without a failure during a storm of ${pattern} connections, leaving no session and bounded memory`, async () => {
      // Warnings up: a debug line per session would be memory the check below counts.
      const { logger, lines } = recordingLogger("warn");
      const server = await echoServer({ logger, frameTimeout: 300 });
      const port = server.address.port;
      const ordinary = new OrdinaryClients({ port, workers: WORKERS, roundsPerConnection: ROUNDS, timeoutMs: 10_000 });
      try {
        const before = await memory();
        ordinary.start("before");
        await until(() => (ordinary.counts().get("before")?.roundTrips ?? 0) >= WORKERS * ROUNDS, 10_000, "ordinary clients served before the storm");
        ordinary.mark("storm");
        const report = await hostilePeers(port, pattern, ["--concurrency", "8", "--duration", "2000"]);
        ordinary.mark("after");
        await until(() => (ordinary.counts().get("after")?.roundTrips ?? 0) >= WORKERS * ROUNDS, 10_000, "ordinary clients served after the storm");
        const counts = await ordinary.stop();
        console.log(`[${RUNTIME}] ${pattern}: ${JSON.stringify(report)}; ${describeCounts(counts)}`);
        assert.deepEqual(ordinary.failures, [], "every ordinary round trip answered");
        assert.ok(report.connections > 0, "the storm made connections");
        const storm = counts.get("storm")!;
        assert.ok(storm.connects >= WORKERS, `ordinary clients connected anew during the storm (${describeCounts(counts)})`);
        if (pattern === "half-close") {
          assert.equal(report.closedByServer + report.cutAtEnd, report.connections, "the server closed every half-closed connection");
        }
        if (pattern === "stall-header") {
          assert.ok(report.closedByServer > 0, "the server closed stalled connections (frame timeout)");
        }
        await until(() => server.sessions.size === 0, 10_000, "every session closed");
        const stats = server.stats();
        const closed = Object.values(stats.closes).reduce((sum, n) => sum + n, 0);
        assert.equal(closed, stats.sessionsOpened, `each session opened closed once (${JSON.stringify(stats)})`);
        assert.equal(stats.acceptErrors, 0);
        assert.deepEqual(lines.filter((line) => / ERROR /.test(line)), [], "nothing logged as an error");
        if (pattern === "stall-header") assert.ok(stats.closes["frame-timeout"] >= report.closedByServer);
        await assertMemoryBounded(before, `${pattern} storm`);
      } finally {
        await ordinary.stop();
        await server.close({ drainTimeout: 100 });
      }
    });
  }

  it("refuses connections past maxConnections with connection-limit while idle ones hold the rest, serving ordinary clients throughout", async () => {
    const IDLE = 60;
    const EXTRA = 10;
    const { logger } = recordingLogger("warn");
    const server = await echoServer({ logger, maxConnections: WORKERS + IDLE });
    const port = server.address.port;
    const transport = await loadTransport();
    const idle: Connection[] = [];
    // Ordinary clients keep their connections: a new one would be refused once the idle ones fill the limit.
    const ordinary = new OrdinaryClients({ port, workers: WORKERS, roundsPerConnection: 0, timeoutMs: 10_000 });
    try {
      const before = await memory();
      ordinary.start("before");
      await until(() => server.sessions.size === WORKERS, 10_000, "ordinary clients connected");
      const open = async (): Promise<{ connection: Connection; closed: Promise<void> }> => {
        const connection = await transport.connect({ host: "127.0.0.1", port });
        let closed!: () => void;
        const promise = new Promise<void>((resolve) => (closed = resolve));
        connection.start({ onData: () => {}, onEnd: () => connection.end(), onDrain: () => {}, onClose: () => closed() });
        idle.push(connection);
        return { connection, closed: promise };
      };
      for (let i = 0; i < IDLE; i++) await open();
      await until(() => server.sessions.size === WORKERS + IDLE, 10_000, "idle connections up to the limit");
      ordinary.mark("full");
      const refused = [];
      for (let i = 0; i < EXTRA; i++) refused.push((await open()).closed);
      await within(Promise.all(refused), 10_000, "the server to close the connections past the limit");
      assert.equal(server.stats().closes["connection-limit"], EXTRA);
      assert.equal(server.sessions.size, WORKERS + IDLE, "the sessions within the limit stay open");
      const served = ordinary.counts().get("full")!.roundTrips;
      await until(() => ordinary.counts().get("full")!.roundTrips >= served + WORKERS * ROUNDS, 10_000, "ordinary clients served at the limit");
      await ordinary.stop();
      assert.deepEqual(ordinary.failures, [], "every ordinary round trip answered");
      for (const connection of idle.splice(0)) connection.abort();
      await until(() => server.sessions.size === 0, 10_000, "every session closed");
      await assertMemoryBounded(before, "idle connections at the limit");
    } finally {
      await ordinary.stop();
      for (const connection of idle) connection.abort();
      await server.close({ drainTimeout: 100 });
    }
  });
});
