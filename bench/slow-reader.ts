/**
 * The slow-reader figure: while one client pushes 64 MiB of echo frames
 * without reading a byte, does the server's resident memory stay under
 * 150 MiB, and do other clients keep their latency?
 *
 * For each runtime it starts `src/cli.ts serve --port 0` as a child process
 * (the command lines of tests/_processes.ts), connects one raw client that
 * writes 64 MiB of 4 KiB echo frames and never reads (it blocks on
 * backpressure, and keeps writing on each drain until everything is handed
 * over or the time bound passes), samples the server's VmRSS and VmHWM from
 * `/proc/<pid>/status` every 100 ms, and meanwhile times a second client's
 * round trips (200 requests spread over the run, after 50 spaced the same way
 * before the load, for comparison). Prints one line per runtime:
 * peak and final RSS, bytes the slow client handed over to the operating
 * system, the other client's p50/p99 (and its baseline before the load), and
 * PASS or FAIL against 150 MiB. Linux only.
 *
 * ```sh
 * node --import tsx bench/slow-reader.ts [--runtime node|deno|bun] [--seconds 12]
 * ```
 *
 * Exits 1 if any runtime fails, 0 otherwise (and on systems other than Linux).
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { type Client, connect, encodeFrame } from "../mod.ts";
import { HELLO_ID } from "../cli.ts";
import { loadTransport } from "../src/transport/detect.ts";
import type { Connection, RuntimeName } from "../src/transport/types.ts";
import { type Child, runtimeCommand, start } from "../tests/_processes.ts";

const RUNTIMES: readonly RuntimeName[] = ["node", "deno", "bun"];
const HOST = "127.0.0.1";
const KiB = 1024;
const MiB = 1024 * KiB;
/** What the slow client tries to push. */
const TOTAL = 64 * MiB;
/** Size of each echo frame, header included. */
const FRAME = 4 * KiB;
/** Frames are written in chunks of this many bytes. */
const CHUNK = MiB;
/** The server's resident memory must stay under this. */
const RSS_LIMIT = 150 * MiB;
/** Round trips of the other client during the load. */
const REQUESTS = 200;
/** Round trips of the other client before the load, for comparison. */
const BASELINE_REQUESTS = 50;
const SAMPLE_MS = 100;
const STARTUP_MS = 15_000;

interface Figures {
  runtime: RuntimeName;
  peakRss: number;
  finalRss: number;
  handedOver: number;
  serverStillReading: boolean;
  baseline: Latency;
  latency: Latency;
  failedRequests: number;
  error?: string;
}

interface Latency {
  p50: number;
  p99: number;
  count: number;
}

function usage(message: string): never {
  console.error(`slow-reader: ${message}`);
  console.error("Usage: node --import tsx bench/slow-reader.ts [--runtime node|deno|bun] [--seconds N]");
  process.exit(2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** VmRSS and VmHWM of `pid`, in bytes, or `undefined` once the process is gone. */
function memoryOf(pid: number): { rss: number; hwm: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status);
    return match ? Number(match[1]) * KiB : 0;
  };
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

function latencyOf(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), count: sorted.length };
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function ms(value: number): string {
  return Number.isNaN(value) ? "n/a" : `${value.toFixed(2)} ms`;
}

/** One timed echo round trip; throws if the reply is wrong. */
async function roundTrip(client: Client, index: number): Promise<number> {
  const body = `latency probe ${index}`;
  const id = index % 1000;
  const started = performance.now();
  const reply = await client.request(id, body, { timeout: 10_000 });
  const elapsed = performance.now() - started;
  if (reply.id !== id || new TextDecoder().decode(reply.body) !== body) {
    throw new Error(`wrong reply to probe ${index}: id ${reply.id}`);
  }
  return elapsed;
}

/** 1 MiB of 4 KiB echo frames (never HELLO, which would be answered with an ERROR frame). */
function echoChunk(): Uint8Array {
  const chunk = new Uint8Array(CHUNK);
  for (let i = 0; i < CHUNK / FRAME; i++) {
    chunk.set(encodeFrame(i === HELLO_ID ? 0 : i, new Uint8Array(FRAME - 4).fill(i & 0xff)), i * FRAME);
  }
  return chunk;
}

async function stop(child: Child): Promise<void> {
  child.kill("SIGTERM");
  const exited = await Promise.race([child.exited.then(() => true), sleep(3000).then(() => false)]);
  if (!exited) {
    child.kill("SIGKILL");
    await Promise.race([child.exited, sleep(3000)]);
  }
}

async function measure(runtime: RuntimeName, loadMs: number): Promise<Figures> {
  const figures: Figures = {
    runtime,
    peakRss: 0,
    finalRss: 0,
    handedOver: 0,
    serverStillReading: false,
    baseline: latencyOf([]),
    latency: latencyOf([]),
    failedRequests: 0,
  };
  const child = start([...runtimeCommand(runtime, "src/cli.ts"), "serve", "--port", "0", "--log-level", "warn"]);
  let sampler: ReturnType<typeof setInterval> | undefined;
  let slow: Connection | undefined;
  let other: Client | undefined;
  try {
    const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, STARTUP_MS);
    const port = Number(match[1]);
    const pid = child.process.pid;
    if (pid === undefined) throw new Error("the server has no process id");
    const sample = (): void => {
      const memory = memoryOf(pid);
      if (memory === undefined) return;
      figures.peakRss = Math.max(figures.peakRss, memory.rss, memory.hwm);
      figures.finalRss = memory.rss;
    };
    sample();
    sampler = setInterval(sample, SAMPLE_MS);

    other = await connect({ host: HOST, port });
    // The baseline is spaced like the probes under load: back-to-back requests would be faster
    // for reasons that have nothing to do with the slow client (warm caches, no wake-ups).
    const spacing = loadMs / REQUESTS;
    const baseline: number[] = [];
    for (let i = 0; i < BASELINE_REQUESTS; i++) {
      baseline.push(await roundTrip(other, i));
      await sleep(spacing);
    }
    figures.baseline = latencyOf(baseline);

    const transport = await loadTransport();
    const conn = await transport.connect({ host: HOST, port });
    slow = conn;
    let closed = false;
    let wake: (() => void) | undefined;
    const wakeWriter = (): void => {
      const resolve = wake;
      wake = undefined;
      resolve?.();
    };
    conn.start({
      onData: () => {}, // never called: reading is paused
      onEnd: () => {},
      onDrain: wakeWriter,
      onClose: () => {
        closed = true;
        wakeWriter();
      },
    });
    conn.pause(); // never read a byte

    const deadline = Date.now() + loadMs;
    const chunk = echoChunk();
    let written = 0;
    const writer = (async () => {
      while (written < TOTAL && !closed && Date.now() < deadline) {
        written += CHUNK;
        if (conn.write(chunk)) continue;
        // Blocked on backpressure: wait for a drain, or give up at the deadline.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(wakeWriter, Math.max(0, deadline - Date.now()));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();

    // Spread the other client's requests over the load phase.
    const latencies: number[] = [];
    const loadStarted = Date.now();
    for (let i = 0; i < REQUESTS; i++) {
      const due = loadStarted + i * spacing;
      if (due > Date.now()) await sleep(due - Date.now());
      try {
        latencies.push(await roundTrip(other, BASELINE_REQUESTS + i));
      } catch {
        figures.failedRequests++;
      }
    }
    await writer;
    sample();
    figures.handedOver = written - conn.backlog;
    figures.latency = latencyOf(latencies);
    // Did the server go on reading what the slow client sent? Check that nothing more is taken.
    const before = written - conn.backlog;
    await sleep(500);
    figures.serverStillReading = written - conn.backlog > before;
    sample();
  } catch (error) {
    figures.error = error instanceof Error ? error.message.split("\n")[0]! : String(error);
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    slow?.abort();
    other?.abort();
    await stop(child);
  }
  return figures;
}

function report(figures: Figures): boolean {
  const pass = figures.error === undefined && figures.peakRss > 0 && figures.peakRss < RSS_LIMIT && figures.failedRequests === 0;
  const parts = [
    `${figures.runtime.padEnd(4)}`,
    `peak RSS ${mib(figures.peakRss)}`,
    `final RSS ${mib(figures.finalRss)}`,
    `slow client handed over ${mib(figures.handedOver)} of ${mib(TOTAL)}${figures.serverStillReading ? " (server still reading)" : ""}`,
    `other client p50 ${ms(figures.latency.p50)} p99 ${ms(figures.latency.p99)} over ${figures.latency.count} requests` +
    ` (before the load: p50 ${ms(figures.baseline.p50)} p99 ${ms(figures.baseline.p99)})` +
    (figures.failedRequests > 0 ? `, ${figures.failedRequests} failed` : ""),
    `${pass ? "PASS" : "FAIL"} (limit ${mib(RSS_LIMIT)})`,
  ];
  if (figures.error !== undefined) parts.push(`error: ${figures.error}`);
  console.log(parts.join(" | "));
  return pass;
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      options: { runtime: { type: "string" }, seconds: { type: "string" }, help: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    usage(error instanceof Error ? error.message : String(error));
  }
  if (values.help) {
    console.log("Usage: node --import tsx bench/slow-reader.ts [--runtime node|deno|bun] [--seconds N]");
    return 0;
  }
  if (process.platform !== "linux") {
    console.log(`slow-reader: skipped: reads /proc/<pid>/status, which only Linux has (this is ${process.platform})`);
    return 0;
  }
  let runtimes: readonly RuntimeName[] = RUNTIMES;
  if (values.runtime !== undefined) {
    const runtime = RUNTIMES.find((name) => name === values.runtime);
    if (runtime === undefined) usage(`unknown runtime "${values.runtime}": use node, deno or bun`);
    runtimes = [runtime];
  }
  const seconds = values.seconds === undefined ? 12 : Number(values.seconds);
  if (!(Number.isFinite(seconds) && seconds >= 1 && seconds <= 25)) usage(`--seconds must be a number from 1 to 25, not "${values.seconds}"`);
  console.log(
    `slow-reader: one client writes ${mib(TOTAL)} of ${FRAME / KiB} KiB echo frames and reads nothing for up to ${seconds} s; ` +
      `another sends ${REQUESTS} echo requests meanwhile; server RSS sampled every ${SAMPLE_MS} ms`,
  );
  let allPass = true;
  for (const runtime of runtimes) {
    if (!report(await measure(runtime, seconds * 1000))) allPass = false;
  }
  return allPass ? 0 : 1;
}

// Exit explicitly: a child's pipes or a socket still closing must not keep the script waiting.
process.exit(await main());
