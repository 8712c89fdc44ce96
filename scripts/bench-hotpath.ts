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
 * node --import tsx scripts/bench-hotpath.ts
 * ./node_modules/.bin/deno run -A scripts/bench-hotpath.ts
 * ./node_modules/.bin/bun scripts/bench-hotpath.ts
 * ```
 *
 * Options: `--seconds 2` per case, `--only TEXT` (cases whose label holds it). Chunks hold 18 frames of 64 B or HELLO (a
 * read of a server under a 16 × 16 pipelined load holds about 20) or 4 frames
 * of 4 KiB (16 × 4).
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import {
  type Connection,
  type ConnectionHandlers,
  createBundledApp,
  FrameEncoder,
  FrameLayout,
  HELLO_ID,
  type Listener,
  serve,
  type Transport,
  detectRuntime,
} from "../mod.ts";

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

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { seconds: { type: "string", default: "2" }, only: { type: "string" } },
  });
  const seconds = Number(values.seconds);
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
  console.log(`tlvkit hot path on ${detectRuntime()}: 16 sessions, in memory`);
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
    const pool = Array.from({ length: POOL }, () => chunk.slice());
    let next = 0;
    for (const connection of connections) connection.bytesWritten = 0;
    let fed = 0;
    /** Frames per second of CPU time (the pauses between batches are not counted). */
    const run = async (ms: number): Promise<number> => {
      const start = performance.now();
      const cpuStart = process.cpuUsage();
      let frameCount = 0;
      while (performance.now() - start < ms) {
        for (let turn = 0; turn < 64; turn++) {
          for (const connection of connections) {
            connection.handlers!.onData(pool[next++ & (POOL - 1)]!);
            frameCount += perChunk;
            fed += chunk.length;
          }
          await Promise.resolve(); // the flush microtasks run here, as after a socket callback
        }
        await nextTurn();
      }
      const cpu = process.cpuUsage(cpuStart);
      return frameCount / ((cpu.user + cpu.system) / 1e6);
    };
    await run(300); // warm up
    const rate = await run(seconds * 1000);
    const written = connections.reduce((n, connection) => n + connection.bytesWritten, 0);
    console.log(`  ${`${c.label} ×${perChunk}`.padEnd(14)} ${(1e9 / rate).toFixed(0).padStart(6)} ns/frame  (${(rate / 1e6).toFixed(2)} M frames per CPU second; ${(written / fed).toFixed(2)} bytes out per byte in)`);
  }
  await server.close({ drainTimeout: 100 });
}

await main();
