/**
 * tlvkit's own cost per frame, without sockets: the bundled server (`serve()`
 * with the bundled application, exactly as `tlvkit serve` runs it) on an
 * in-memory transport, fed chunks of pipelined frames as a socket would
 * deliver them, its writes counted and dropped. What is left is the framing,
 * dispatch, routing, ordering and flushing that tlvkit adds on top of the
 * runtime's socket API: the part a profile of a network run attributes to
 * JavaScript. Runs on Node.js, Deno and Bun.
 *
 * ```sh
 * node --import tsx bench/bench-hotpath.ts
 * ./node_modules/.bin/deno run -A bench/bench-hotpath.ts
 * ./node_modules/.bin/bun bench/bench-hotpath.ts
 * ```
 *
 * Options: `--seconds 2` per case, `--only TEXT` (cases whose label holds it). Chunks hold 18 frames of 64 B or HELLO (a
 * read of a server under a 16 × 16 pipelined load holds about 20) or 4 frames
 * of 4 KiB (16 × 4).
 *
 * `--memory` says where each chunk lies. `fresh` (the default): new memory
 * per read, as Bun hands on chunks over 128 KiB; every frame gets a new body
 * view. `own`: each connection's memory, read into again once the chunk is
 * handed back, as Node's and Deno's read regions and Bun's copy of small
 * chunks give; the decoder gives the same body objects again. `shared`: one
 * buffer for all connections, as Bun's copy of medium chunks (up to 128 KiB)
 * gives.
 *
 * `--evict BYTES` (default 0) measures with cold caches, as between two reads
 * of one connection on a loaded server, when the kernel's and the runtime's
 * copies of the other connections' traffic have passed through the caches:
 * before each chunk, BYTES are copied through memory, then the chunk is
 * copied into its buffer (the read, which leaves it warm). The same loop
 * without the server is timed too and subtracted, so this figure is noisier
 * than the warm one (a difference of two timings; each the better of two
 * runs). JavaScriptCore's cost grows with cold caches where V8's hardly does
 * (figures: docs/performance.md#bun).
 *
 * @module
 */

import process from "node:process";
import { scriptArgs } from "../scripts/_script_args.ts";
import { type Connection, type ConnectionHandlers, FrameEncoder, FrameLayout, type Listener, serve, type Transport } from "../mod.ts";
import { createBundledApp, HELLO_ID } from "../cli.ts";
import { detectRuntime } from "../src/transport/detect.ts";

/** A connection that swallows writes (the OS took them whole) and is fed by hand. */
class MemoryConnection implements Connection {
  readonly remote = { host: "127.0.0.1", port: 1 };
  readonly local = { host: "127.0.0.1", port: 2 };
  readonly backlog = 0;
  handlers: ConnectionHandlers | undefined;
  bytesWritten = 0;
  writes = 0;

  start(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
  }
  write(bytes: Uint8Array): boolean {
    this.bytesWritten += bytes.length;
    this.writes++;
    return true;
  }
  end(): void {
    queueMicrotask(() => this.handlers?.onClose());
  }
  abort(): void {
    this.handlers?.onClose();
  }
  pause(): void {}
  resume(): void {}
  setNoDelay(): void {}
}

function memoryTransport(connections: MemoryConnection[]): Transport {
  return {
    runtime: "node",
    listen(_options, onConnection): Promise<Listener> {
      for (const connection of connections) onConnection(connection);
      return Promise.resolve({ address: { host: "127.0.0.1", port: 9 }, close: () => Promise.resolve() });
    },
    connect(): Promise<Connection> {
      return Promise.reject(new Error("not used"));
    },
  };
}

interface Case {
  label: string;
  /** Frames per chunk: a 16 × 16 load of small frames brings ~20 per read; 4 KiB runs 16 × 4. */
  perChunk: number;
  id: (i: number) => number;
  body: (i: number) => Uint8Array;
}

const utf8 = new TextEncoder();
const POOL = 1024;
const MEMORY_TEXT: Record<MemoryKind, string> = {
  fresh: "fresh memory per read",
  own: "each connection's reused memory",
  shared: "one reused buffer for all connections",
};
/** Largest `--evict`. */
const EVICT_MAX = 64 * 1024 * 1024;

function bodyOf(size: number, seed: number): Uint8Array {
  const body = new Uint8Array(size);
  for (let j = 0; j < size; j++) body[j] = (seed * 131 + j * 7 + 1) & 0xff;
  return body;
}

const CASES: Case[] = [
  { label: "64 B echo", perChunk: 18, id: (i) => 2 + i, body: (i) => bodyOf(64, i) },
  { label: "4 KiB echo", perChunk: 4, id: (i) => 2 + i, body: (i) => bodyOf(4096, i) },
  { label: "HELLO", perChunk: 18, id: () => HELLO_ID, body: (i) => utf8.encode(JSON.stringify({ id: 100 + i, data: "abcdefghijklmnopqrstuvwxyzabcdef" })) },
];

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

const USAGE = "Usage: bench-hotpath.ts [--seconds 2] [--only TEXT] [--evict BYTES] [--memory fresh|own|shared]";

/** Where each chunk lies (see the module doc). */
const MEMORY_KINDS = ["fresh", "own", "shared"] as const;
type MemoryKind = typeof MEMORY_KINDS[number];

async function main(): Promise<void> {
  const values = scriptArgs("bench-hotpath", USAGE, {
    seconds: { type: "string", default: "2" },
    only: { type: "string" },
    evict: { type: "string", default: "0" },
    memory: { type: "string", default: "fresh" },
  }, (v) => {
    if (!(MEMORY_KINDS as readonly string[]).includes(v.memory!)) {
      throw new Error(`--memory must be one of ${MEMORY_KINDS.join(", ")}, got "${v.memory}"`);
    }
    const seconds = Number(v.seconds);
    if (!(Number.isInteger(seconds * 1000) && seconds > 0)) throw new Error(`--seconds must be a positive number, got "${v.seconds}"`);
    const evict = Number(v.evict);
    if (!(Number.isInteger(evict) && evict >= 0 && evict <= EVICT_MAX)) {
      throw new Error(`--evict must be a whole number of bytes from 0 to ${EVICT_MAX}, got "${v.evict}"`);
    }
  });
  const seconds = Number(values.seconds);
  const evict = Number(values.evict);
  const memory = values.memory as MemoryKind;
  // With --evict, copied from one to the other before each chunk.
  const evictFrom = new Uint8Array(evict).fill(1);
  const evictTo = new Uint8Array(evict);
  const connections = Array.from({ length: 16 }, () => new MemoryConnection());
  const app = createBundledApp(new FrameLayout());
  const server = await serve({
    port: 0,
    transport: memoryTransport(connections),
    router: app.router,
    onError: app.onError,
    borrowBodies: true, // as `tlvkit serve` runs it
  });
  const encoder = new FrameEncoder();
  console.log(`tlvkit hot path on ${detectRuntime()}: 16 sessions, in memory, chunks in ${MEMORY_TEXT[memory]}`);
  for (const c of CASES) {
    if (values.only !== undefined && !c.label.toLowerCase().includes(values.only.toLowerCase())) continue;
    const perChunk = c.perChunk;
    // Each session gets its own chunk (a fresh buffer each time, as sockets deliver).
    const frames = Array.from({ length: perChunk }, (_, i) => encoder.encode(c.id(i), c.body(i)));
    const chunk = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let offset = 0;
    for (const frame of frames) {
      chunk.set(frame, offset);
      offset += frame.length;
    }
    // Sockets deliver a fresh buffer per read; the copies are made up front so
    // that allocating them is not counted (the runtime's cost, not tlvkit's).
    // Every frame is whole, so a copy is free again once its flush is done.
    // With --memory own or shared, the same chunk object again for each read,
    // as a transport that takes its chunks back gives (see the module doc).
    const shared = chunk.slice();
    const own = memory === "own" ? connections.map(() => chunk.slice()) : [];
    const pool = memory === "fresh" ? Array.from({ length: POOL }, () => chunk.slice()) : [];
    let next = 0;
    for (const connection of connections) connection.bytesWritten = 0;
    let fed = 0;
    /**
     * CPU nanoseconds per frame (the pauses between batches are not counted);
     * `withServer` false runs only the --evict stand-in for the socket.
     */
    const run = async (ms: number, withServer: boolean): Promise<number> => {
      const start = performance.now();
      const cpuStart = process.cpuUsage();
      let frameCount = 0;
      while (performance.now() - start < ms) {
        for (let turn = 0; turn < 64; turn++) {
          for (let c = 0; c < connections.length; c++) {
            const connection = connections[c]!;
            const slot = memory === "fresh" ? pool[next++ & (POOL - 1)]! : memory === "own" ? own[c]! : shared;
            if (evict > 0) {
              evictTo.set(evictFrom);
              slot.set(chunk);
            }
            if (withServer) {
              connection.handlers!.onData(slot);
              fed += chunk.length;
            }
            frameCount += perChunk;
          }
          await Promise.resolve(); // the flush microtasks run here, as after a socket callback
        }
        await nextTurn();
      }
      const cpu = process.cpuUsage(cpuStart);
      return ((cpu.user + cpu.system) * 1000) / frameCount;
    };
    await run(300, true); // warm up
    let label = `${c.label} ×${perChunk}`.padEnd(14);
    if (evict === 0) {
      const ns = await run(seconds * 1000, true);
      const written = connections.reduce((n, connection) => n + connection.bytesWritten, 0);
      console.log(`  ${label} ${ns.toFixed(0).padStart(6)} ns/frame  (${(1e3 / ns).toFixed(2)} M frames per CPU second; ${(written / fed).toFixed(2)} bytes out per byte in)`);
      continue;
    }
    // Cold: the stand-in's own cost is subtracted; the better of two runs of each (noise only adds).
    await run(300, false);
    const half = (seconds * 1000) / 2;
    let both = Infinity;
    let alone = Infinity;
    for (let i = 0; i < 2; i++) {
      alone = Math.min(alone, await run(half, false));
      both = Math.min(both, await run(half, true));
    }
    label += ` cold (--evict ${evict})`;
    console.log(`  ${label} ${(both - alone).toFixed(0).padStart(6)} ns/frame  (${both.toFixed(0)} with the socket stand-in, ${alone.toFixed(0)} for the stand-in alone)`);
  }
  await server.close({ drainTimeout: 100 });
}

await main();
