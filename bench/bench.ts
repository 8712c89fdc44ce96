/**
 * Load generator for tlvkit servers (and for the raw echo servers of
 * `bench/raw-echo/`, the ceiling tlvkit is compared with). Runs unchanged on
 * Node.js, Deno and Bun: it drives connections through tlvkit's own socket
 * adapter (`loadTransport()`) and codec (`FrameEncoder`/`FrameDecoder`), keeps
 * `--window` frames in flight on each of `--connections` connections, checks
 * every reply, and reports frames/s, MB/s, per-frame round-trip latency, its
 * own CPU and — when it started the server itself, on Linux — the server's CPU
 * time per frame over the measured window and its peak RSS.
 *
 * ```sh
 * # start a server (pinned to CPU 1; the generator pins itself to CPU 0) and load it
 * node --import tsx bench/bench.ts --server tlvkit --runtime deno --size 64
 * node --import tsx bench/bench.ts --server raw --runtime bun --size 4096 --window 4
 * node --import tsx bench/bench.ts --server netty --size 64
 * node --import tsx bench/bench.ts --server tlvkit --runtime node --mode hello --json
 * node --import tsx bench/bench.ts --server handler --runtime deno --size 64
 * node --import tsx bench/bench.ts --server handler-json --runtime bun --mode json
 * node --import tsx bench/bench.ts --server tlvkit --runtime node --idle 1000
 * # attach to a running server (add --pid PID for its CPU and RSS)
 * node --import tsx bench/bench.ts --port 10086 --duration 10
 * # the generator itself on Deno or Bun
 * ./node_modules/.bin/deno run -A bench/bench.ts --server tlvkit --runtime deno
 * ./node_modules/.bin/bun bench/bench.ts --server tlvkit --runtime bun
 * ```
 *
 * Options: `--host H` `--port P` (attach), or `--server
 * tlvkit|handler|handler-json|raw` with `--runtime node|deno|bun`, or
 * `--server netty` (start it, see {@link ServerKind}; Netty runs on the JVM and
 * needs a JDK and Netty's jars, see `bench/netty-echo.ts`); `--connections 16`, `--window 16`
 * (frames in flight per connection), `--size 64` (body bytes; for the other
 * modes the request body's approximate size), `--duration 5` and `--warmup 1` (seconds),
 * `--mode echo|hello|hello-styled|json` (see {@link LoadMode}), `--idle N` (open N idle sessions and report the server's
 * RSS before and after instead of loading it), `--expect tlvkit|raw` (what
 * replies look like when attaching; a raw echo returns every byte verbatim),
 * `--pid PID` (the attached server's process, for CPU and RSS), `--generator
 * native|js` (the native C generator of `bench/native-load/`, compiled on
 * first use, is the default on Linux when a C compiler is there; `js` runs the
 * generator in this process, on whichever runtime runs it), `--workers N`
 * (start `serve --workers N`; nothing is pinned then, and the server's CPU and
 * RSS are not reported, since the process started is only the supervisor), `--no-pin`,
 * `--json` (one machine-readable result line on stdout).
 *
 * What the figures mean:
 *
 * - **frames/s**: replies received and verified within the measured window,
 *   per second. **MB/s**: wire bytes (header + body) of those frames per
 *   direction, in 10^6 bytes per second (`in` = replies, `out` = the requests
 *   they answer; equal for echo).
 * - **latency**: per frame, from the moment the generator handed the request to
 *   the socket to the moment the chunk holding its reply was processed.
 *   Requests are pipelined, so this includes queueing behind the window.
 * - **server CPU µs/frame**: `utime + stime` of the server process from
 *   `/proc/PID/stat` at the window's start and end, divided by the frames in
 *   the window. The kernel counts in ticks (`getconf CLK_TCK`, normally 100 per
 *   second, so 10 ms): a 5 s window at full load holds ~500 ticks (0.2 %
 *   granularity); windows under a second are coarse.
 * - **server peak RSS**: `VmHWM` from `/proc/PID/status`, the process's high
 *   water mark since it started (including start-up).
 * - **generator CPU**: `process.cpuUsage()` over the window. When it nears
 *   100 % of a core while the server's stays lower, the generator, not the
 *   server, sets the pace: throughput figures then describe the generator.
 *
 * Every reply is checked (echo: same id and body; hello: the exact JSON reply,
 * precomputed; raw server: the bytes echoed verbatim, which are the request
 * frames). Any mismatch, missing reply, extra frame or unexpected close counts
 * as an error; the exit status is 1 when errors are not 0.
 *
 * Pinning: when it starts the server and `taskset` exists on a machine with at
 * least two CPUs, the server runs under `taskset -c 1` and the generator pins
 * all its threads to CPU 0 (`taskset -a -p -c 0`); `--no-pin` turns both off.
 * Elsewhere nothing is pinned and the figures are noisier.
 *
 * The module also exports its parts (`startServer`, `runLoad`, `runIdle`, ...)
 * for `bench/bench-matrix.ts`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Connection, FrameDecoder, FrameEncoder, type RuntimeName, type Transport } from "../mod.ts";
import { HELLO_ID, HELLO_REPLY_PREFIX } from "../cli.ts";
import { detectRuntime, loadTransport } from "../src/transport/detect.ts";
import { ROOT, runtimeCommand } from "../tests/_processes.ts";
import { nativeGenerator, runNativeLoad } from "./native-load.ts";
import { nettyEcho } from "./netty-echo.ts";
import { builtNodeCommand, type NodeServerSource } from "./node-build.ts";

export { ROOT, runtimeCommand };

/**
 * Which server a run talks to: tlvkit's `serve` (the bundled app: echo and
 * HELLO), a tlvkit server with an ordinary handler of its own (`handler`:
 * `bench/handler-echo.ts --app echo`, `server.fallback((r) => r.reply(r.body))`;
 * `handler-json`: `--app json`, a JSON request/response handler), the raw
 * echo of `bench/raw-echo/`, or the Netty TLV echo of `bench/netty-echo/` (on
 * the JVM, whatever the runtime). On Node.js, tlvkit's servers and the raw
 * echo run compiled (`bench/node-build.ts`); Deno and Bun run the TypeScript.
 */
export type ServerKind = "tlvkit" | "handler" | "handler-json" | "raw" | "netty";
/** What replies look like: tlvkit's (echo / HELLO answers) or a verbatim echo's (the request bytes). */
export type ReplyShape = "tlvkit" | "raw";

/** The replies a server of this kind gives: Netty's echo, like the raw one, returns each frame verbatim. */
export function replyShape(kind: ServerKind): ReplyShape {
  return kind === "netty" || kind === "raw" ? "raw" : "tlvkit";
}
/**
 * What is sent: echo frames of `size` bytes; HELLO requests, compact
 * (`hello`) or indented as the original client's jsoncpp writes them
 * (`hello-styled`: keys sorted, `" : "`, newlines); or JSON objects for a
 * request/response handler that answers each with `"ok": true` added
 * (`json`: `bench/handler-echo.ts --app json`).
 */
export type LoadMode = "echo" | "hello" | "hello-styled" | "json";

/** Every load mode, for option checks. */
export const LOAD_MODES: readonly LoadMode[] = ["echo", "hello", "hello-styled", "json"];

const RUNTIMES: readonly RuntimeName[] = ["node", "deno", "bun"];
const SERVER_KINDS: readonly ServerKind[] = ["tlvkit", "handler", "handler-json", "raw", "netty"];
const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------
// Processes, pinning and /proc

let tasksetFound: boolean | undefined;

/** `true` when CPUs can be pinned: Linux, `taskset` present, at least two CPUs. */
export function canPin(): boolean {
  if (tasksetFound === undefined) {
    tasksetFound = process.platform === "linux" && availableParallelism() >= 2 &&
      ["/usr/bin/taskset", "/bin/taskset", "/usr/local/bin/taskset"].some((path) => existsSync(path));
  }
  return tasksetFound;
}

/**
 * Pin every thread of this process to `cpu` (Linux, `taskset`).
 *
 * @returns `true` when it worked.
 */
export function pinSelf(cpu: number): boolean {
  if (!canPin()) return false;
  try {
    execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(process.pid)], { stdio: "ignore", timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

let clockTicks: number | undefined;

/** Kernel clock ticks per second (`getconf CLK_TCK`; 100 when it cannot be asked). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    clockTicks = 100;
    try {
      const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5000 }).trim());
      if (Number.isInteger(value) && value > 0) clockTicks = value;
    } catch {
      // keep 100, Linux's usual USER_HZ
    }
  }
  return clockTicks;
}

/** `utime + stime` of process `pid` in clock ticks, from `/proc/PID/stat`; `undefined` off Linux. */
export function readCpuTicks(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : undefined;
}

/** A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`) in KiB; `undefined` off Linux. */
export function readStatusKiB(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status);
  return match ? Number(match[1]) : undefined;
}

/** Name and version of the runtime running this code. */
export function runtimeVersion(): string {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (g.Deno) return `deno ${g.Deno.version.deno}`;
  if (g.Bun) return `bun ${g.Bun.version}`;
  return `node ${process.versions.node}`;
}

/** A server started by {@link startServer}. */
export interface ServerProcess {
  readonly kind: ServerKind;
  readonly runtime: RuntimeName;
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  /** The CPU it is pinned to, if any. */
  readonly cpu: number | undefined;
  /** The last few KiB of its standard error. */
  stderr(): string;
  /** SIGTERM, then SIGKILL after 2 s; resolves once it has exited (or 4 s have passed). */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function signal(child: ChildProcess, name: "SIGTERM" | "SIGKILL"): void {
  if (!alive(child) || child.pid === undefined) return;
  try {
    process.kill(child.pid, name);
  } catch {
    // already gone
  }
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (!alive(child)) return Promise.resolve(true);
  return new Promise((resolveExit) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolveExit(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolveExit(true);
    };
    child.once("exit", onExit);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  signal(child, "SIGTERM");
  if (!(await exited(child, 2000))) {
    signal(child, "SIGKILL");
    await exited(child, 2000);
  }
  children.delete(child);
}

/** Stop every server this module started and has not stopped yet. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child)));
}

/** Last resort for an exiting process: SIGKILL every child still running. */
export function killAllServersNow(): void {
  for (const child of children) signal(child, "SIGKILL");
}

/**
 * The command line that starts a server of this kind on a free port (run in
 * the repository root). On Node.js, tlvkit's servers and the raw echo run as
 * compiled JavaScript, built on first use (`bench/node-build.ts`).
 *
 * @param kind Which server (see {@link ServerKind}).
 * @param runtime The runtime to run it on (not used for `netty`).
 * @param workers For `tlvkit`: `serve --workers N` (N processes sharing the port).
 * @returns The program and its arguments.
 * @throws {Error} When the Node build fails or Netty cannot be built.
 */
export function serverCommand(kind: ServerKind, runtime: RuntimeName, workers = 1): string[] {
  if (kind === "netty") {
    const netty = nettyEcho(ROOT);
    if (netty.command === undefined) throw new Error(`no Netty echo: ${netty.reason}`);
    return [...netty.command, "0"];
  }
  // Starting worker processes needs more than the network under Deno.
  const denoPermissions = workers === 1 ? ["--allow-net"] : ["--allow-net", "--allow-run", "--allow-env"];
  const [source, args]: [string, string[]] = kind === "tlvkit"
    ? ["src/cli.ts", ["serve", "--port", "0", "--drain-timeout", "1", "--workers", String(workers)]]
    : kind === "raw"
    ? [`bench/raw-echo/${runtime}.ts`, ["--port", "0"]]
    : ["bench/handler-echo.ts", ["--app", kind === "handler" ? "echo" : "json", "--port", "0"]];
  const run = runtime === "node" ? builtNodeCommand(ROOT, source as NodeServerSource) : runtimeCommand(runtime, source, denoPermissions);
  return [...run, ...args];
}

/**
 * Start a server as a child process and wait for its `listening on` line.
 *
 * @param kind Which server (see {@link ServerKind} and {@link serverCommand};
 *   `netty` is built on first use, see `netty-echo.ts`).
 * @param runtime The runtime to run it on (not used for `netty`).
 * @param cpu Pin it to this CPU with `taskset -c` (ignored when pinning is impossible).
 * @param workers For `tlvkit`: `serve --workers N` (N processes sharing the port).
 * @returns The running server.
 * @throws {Error} When it exits or prints nothing within 30 s, or it cannot be built.
 */
export async function startServer(kind: ServerKind, runtime: RuntimeName, cpu?: number, workers = 1): Promise<ServerProcess> {
  const label = kind === "netty" ? "netty server" : `${kind} server on ${runtime}`;
  return { kind, runtime, ...(await startServerCommand(serverCommand(kind, runtime, workers), label, cpu)) };
}

/** A server started from a command line by {@link startServerCommand}. */
export type CommandServer = Omit<ServerProcess, "kind" | "runtime">;

/**
 * Start any server command (run in the repository root) and wait for it to
 * print `listening on HOST:PORT` on standard output.
 *
 * @param args The program and its arguments (no shell).
 * @param label What to call it in errors.
 * @param cpu Pin it to this CPU with `taskset -c` (ignored when pinning is impossible).
 * @returns The running server.
 * @throws {Error} When it cannot start, exits, or prints nothing within 30 s.
 */
export async function startServerCommand(args: readonly string[], label: string, cpu?: number): Promise<CommandServer> {
  const pinned = cpu !== undefined && canPin() ? cpu : undefined;
  const command = pinned !== undefined ? ["taskset", "-c", String(pinned), ...args] : [...args];
  const child = spawn(command[0]!, command.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (text: string) => {
    stderr = (stderr + text).slice(-4096);
  });
  try {
    const [host, port] = await new Promise<[string, number]>((resolveListen, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${label} printed no "listening on" line within 30 s; stderr: ${stderr.slice(-500).trim()}`));
      }, 30_000);
      const onData = (text: string): void => {
        stdout = (stdout + text).slice(-4096);
        const match = /listening on (\S+):(\d+)/.exec(stdout);
        if (match) {
          clearTimeout(timer);
          child.stdout!.off("data", onData);
          child.stdout!.resume(); // keep draining, nothing else is expected there
          resolveListen([match[1]!, Number(match[2])]);
        }
      };
      child.stdout!.on("data", onData);
      child.once("exit", (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${label} exited (${code ?? sig}) before listening; stderr: ${stderr.slice(-500).trim()}`));
      });
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`${label} failed to start: ${error.message}`));
      });
    });
    return {
      pid: child.pid!,
      host: host.replace(/^\[|\]$/g, ""),
      port,
      cpu: pinned,
      stderr: () => stderr,
      stop: () => stopChild(child),
    };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

// ---------------------------------------------------------------------------
// What is sent and what must come back

/** Precomputed requests and expected replies, cycled through in order. */
export interface Plan {
  /** Frames 0..k-1, twice over, back to back: any run of up to k frames is one subarray. */
  readonly ring: Uint8Array;
  /** Start of frame i in `ring` (2k + 1 entries). */
  readonly offsets: Float64Array;
  readonly k: number;
  readonly replyIds: Uint32Array;
  readonly replyBodies: Uint8Array[];
  readonly requestSize: Float64Array;
  readonly replySize: Float64Array;
}

const RING_LIMIT = 32 * 1024 * 1024;

/**
 * The requests to cycle through and the replies each must get.
 *
 * @param mode Echo frames or HELLO requests.
 * @param size Body bytes (HELLO: about the request body's size).
 * @param expect What answers: tlvkit (echo / HELLO replies) or a raw echo (the request bytes).
 * @param window Frames in flight per connection (the ring holds at least as many).
 * @returns The plan.
 */
export function buildPlan(mode: LoadMode, size: number, expect: ReplyShape, window: number): Plan {
  const encoder = new FrameEncoder();
  const k = Math.max(window, 64);
  const frames: Uint8Array[] = [];
  const replyIds = new Uint32Array(k);
  const replyBodies: Uint8Array[] = [];
  const requestSize = new Float64Array(k);
  const replySize = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    let id: number;
    let body: Uint8Array;
    let replyId: number;
    let replyBody: Uint8Array;
    if (mode === "echo") {
      id = (i * 37 + 2) % 65536;
      if (id === HELLO_ID) id = 65533;
      body = new Uint8Array(size);
      for (let j = 0; j < size; j++) body[j] = (i * 131 + j * 7 + 1) & 0xff;
      replyId = id;
      replyBody = body;
    } else {
      const target = (i * 37 + 3) % 65536;
      const overhead = `{"id":${target},"data":""}`.length;
      let data = "";
      for (let j = 0; j < Math.max(1, size - overhead); j++) data += String.fromCharCode(97 + ((i + j) % 26));
      if (mode === "json") {
        id = (i * 37 + 2) % 65536;
        if (id === HELLO_ID) id = 65533;
        body = utf8.encode(JSON.stringify({ id: target, data }));
        replyId = id;
        replyBody = utf8.encode(JSON.stringify({ id: target, data, ok: true }));
      } else if (mode === "hello-styled") {
        // jsoncpp's toStyledString: keys sorted, three-space indent; the reply keeps that order.
        id = HELLO_ID;
        body = utf8.encode(`{\n   "data" : ${JSON.stringify(data)},\n   "id" : ${target}\n}\n`);
        replyId = target;
        replyBody = utf8.encode(JSON.stringify({ data: HELLO_REPLY_PREFIX + data, id: target }));
      } else {
        id = HELLO_ID;
        body = utf8.encode(JSON.stringify({ id: target, data }));
        replyId = target;
        replyBody = utf8.encode(JSON.stringify({ id: target, data: HELLO_REPLY_PREFIX + data }));
      }
    }
    const frame = encoder.encode(id, body);
    if (frame.length * k * 2 > RING_LIMIT) {
      throw new RangeError(`--window ${window} × --size ${size} needs more than ${RING_LIMIT >> 20} MiB of precomputed frames`);
    }
    frames.push(frame);
    if (expect === "raw") {
      replyIds[i] = id; // a raw echo returns the request bytes verbatim
      replyBodies.push(body);
    } else {
      replyIds[i] = replyId;
      replyBodies.push(replyBody);
    }
    requestSize[i] = frame.length;
    replySize[i] = encoder.frameSize(replyBodies[i]!);
  }
  const offsets = new Float64Array(2 * k + 1);
  let total = 0;
  for (let i = 0; i < 2 * k; i++) {
    offsets[i] = total;
    total += frames[i % k]!.length;
  }
  offsets[2 * k] = total;
  const ring = new Uint8Array(total);
  for (let i = 0; i < 2 * k; i++) ring.set(frames[i % k]!, offsets[i]!);
  return { ring, offsets, k, replyIds, replyBodies, requestSize, replySize };
}

// ---------------------------------------------------------------------------
// Latency histogram: log-linear buckets, ~2 % resolution, bounded memory

const BUCKETS_PER_OCTAVE = 32;
const BUCKET_COUNT = BUCKETS_PER_OCTAVE * 34;

class Histogram {
  readonly counts = new Float64Array(BUCKET_COUNT);
  total = 0;
  max = 0;

  record(us: number): void {
    const bucket = us < 1 ? 0 : Math.min(BUCKET_COUNT - 1, 1 + Math.floor(Math.log2(us) * BUCKETS_PER_OCTAVE));
    this.counts[bucket]!++;
    this.total++;
    if (us > this.max) this.max = us;
  }

  /** The value at quantile `q` (0..1), in µs: the geometric middle of its bucket. */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
      seen += this.counts[bucket]!;
      if (seen >= rank) return bucket === 0 ? 0.5 : Math.min(this.max, 2 ** ((bucket - 0.5) / BUCKETS_PER_OCTAVE));
    }
    return this.max;
  }
}

// ---------------------------------------------------------------------------
// Load

/** Options of {@link runLoad}. */
export interface LoadOptions {
  host: string;
  port: number;
  connections: number;
  /** Frames in flight per connection. */
  window: number;
  /** Body bytes (echo) or approximate request body bytes (hello). */
  size: number;
  /** Seconds measured. */
  duration: number;
  /** Seconds run before measuring. */
  warmup: number;
  mode: LoadMode;
  /** What replies look like: tlvkit's (echo / HELLO answers) or a raw echo's (the request bytes). */
  expect: ReplyShape;
  /** The server's process, for its CPU time and RSS (same machine only). */
  serverPid: number | undefined;
  /** Live progress on standard error. */
  progress: boolean;
  /** Socket adapter; defaults to the running runtime's. */
  transport?: Transport;
}

/** The server's side of a load run (Linux, when its pid is known). */
export interface ServerUsage {
  pid: number;
  /** CPU time (user + system) per frame in the window, µs. */
  cpuUsPerFrame: number;
  /** CPU time over wall time in the window (1 = one core busy). */
  cpuShare: number;
  /** Clock ticks counted in the window (the measurement's granularity). */
  ticks: number;
  ticksPerSecond: number;
  /** VmHWM at the end of the run, KiB. */
  peakRssKiB: number | undefined;
}

/** The outcome of {@link runLoad}. */
export interface LoadResult {
  mode: LoadMode;
  size: number;
  connections: number;
  window: number;
  generator: string;
  /** Seconds actually measured. */
  seconds: number;
  frames: number;
  framesPerSecond: number;
  /** Reply wire bytes (header + body) per second, 10^6. */
  mbpsIn: number;
  /** Request wire bytes per second, 10^6. */
  mbpsOut: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** Generator CPU (user + system) per frame, µs. */
  generatorCpuUsPerFrame: number;
  /** Generator CPU time over wall time (1 = one core busy). */
  generatorCpuShare: number;
  server: ServerUsage | undefined;
  errors: number;
  /** The first few error messages. */
  errorSamples: string[];
}

class Run {
  measuring = false;
  /** No new requests: only the replies in flight are awaited. */
  stopping = false;
  /** The generator is closing its connections: closes are expected. */
  closing = false;
  frames = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly histogram = new Histogram();
  errors = 0;
  readonly errorSamples: string[] = [];
  /** Frames received over the whole run, for progress. */
  seen = 0;
  /** Resolved when every flow has all its replies (or is closed) after stopping. */
  onSettled: (() => void) | undefined;

  error(message: string): void {
    this.errors++;
    if (this.errorSamples.length < 5) this.errorSamples.push(message);
  }
}

/** One connection's stream of pipelined requests and their replies. */
class Flow {
  sent = 0;
  received = 0;
  closed = false;
  #now = 0;
  readonly #sendTimes: Float64Array;
  readonly #decoder = new FrameDecoder();
  readonly #closedWaiters: Array<() => void> = [];
  readonly index: number;
  readonly connection: Connection;
  readonly run: Run;
  readonly plan: Plan;
  readonly window: number;

  constructor(index: number, connection: Connection, run: Run, plan: Plan, window: number) {
    this.index = index;
    this.connection = connection;
    this.run = run;
    this.plan = plan;
    this.window = window;
    this.#sendTimes = new Float64Array(plan.k);
    connection.start({
      onData: (chunk) => this.#onData(chunk),
      onEnd: () => {
        if (!this.run.closing) this.run.error(`connection ${this.index}: the server half-closed it`);
      },
      onDrain: () => {},
      onClose: (error) => {
        this.closed = true;
        if (!this.run.closing || this.received < this.sent) {
          this.run.error(`connection ${this.index}: closed unexpectedly${error ? ` (${error.message})` : ""}`);
        }
        for (const wake of this.#closedWaiters.splice(0)) wake();
        this.run.onSettled?.();
      },
    });
  }

  /** `true` when nothing is in flight (or nothing can come any more). */
  get settled(): boolean {
    return this.closed || this.received >= this.sent;
  }

  /** Resolves when the connection has closed, or after `ms`. */
  closedWithin(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolveClosed) => {
      const timer = setTimeout(resolveClosed, ms);
      this.#closedWaiters.push(() => {
        clearTimeout(timer);
        resolveClosed();
      });
    });
  }

  topUp(now: number): void {
    const n = this.window - (this.sent - this.received);
    if (n <= 0 || this.closed) return;
    const plan = this.plan;
    const k = plan.k;
    const start = this.sent % k;
    this.connection.write(plan.ring.subarray(plan.offsets[start]!, plan.offsets[start + n]!));
    const times = this.#sendTimes;
    for (let seq = this.sent, end = this.sent + n; seq < end; seq++) times[seq % k] = now;
    this.sent += n;
  }

  readonly #onFrame = (id: number, body: Uint8Array): void => {
    const run = this.run;
    const plan = this.plan;
    const seq = this.received;
    if (seq >= this.sent) {
      run.error(`connection ${this.index}: a frame (id ${id}, ${body.length} B) arrived with no request in flight`);
      return;
    }
    const slot = seq % plan.k;
    const expected = plan.replyBodies[slot]!;
    if (id !== plan.replyIds[slot] || body.length !== expected.length || Buffer.compare(body, expected) !== 0) {
      run.error(
        `connection ${this.index}: reply ${seq} is id ${id} with ${body.length} B, expected id ${plan.replyIds[slot]} with ` +
          `${expected.length} B${body.length === expected.length ? " (bodies differ)" : ""}`,
      );
    }
    if (run.measuring) {
      run.frames++;
      run.bytesIn += plan.replySize[slot]!;
      run.bytesOut += plan.requestSize[slot]!;
      run.histogram.record((this.#now - this.#sendTimes[slot]!) * 1000);
    }
    this.received = seq + 1;
    run.seen++;
  };

  #onData(chunk: Uint8Array): void {
    this.#now = performance.now();
    try {
      this.#decoder.decode(chunk, this.#onFrame);
    } catch (error) {
      this.run.error(`connection ${this.index}: undecodable reply stream: ${error instanceof Error ? error.message : String(error)}`);
      this.connection.abort();
      return;
    }
    if (this.run.stopping) {
      if (this.received >= this.sent) this.run.onSettled?.();
    } else {
      this.topUp(this.#now);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Resolve when `done()` holds (checked on every `run.onSettled` call), or after `ms`. */
function settle(run: Run, done: () => boolean, ms: number): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise((resolveSettle) => {
    const timer = setTimeout(finish, ms);
    function finish(): void {
      clearTimeout(timer);
      run.onSettled = undefined;
      resolveSettle();
    }
    run.onSettled = () => {
      if (done()) finish();
    };
  });
}

async function closeFlows(run: Run, flows: Flow[]): Promise<void> {
  run.stopping = true;
  run.closing = true;
  for (const flow of flows) flow.connection.end();
  await Promise.all(flows.map((flow) => flow.closedWithin(3000)));
  for (const flow of flows) if (!flow.closed) flow.connection.abort();
}

async function connectAll(transport: Transport, host: string, port: number, count: number, batch: number): Promise<Connection[]> {
  const connections: Connection[] = [];
  try {
    for (let i = 0; i < count; i += batch) {
      const n = Math.min(batch, count - i);
      const settled = await Promise.allSettled(Array.from({ length: n }, () => transport.connect({ host, port })));
      for (const outcome of settled) if (outcome.status === "fulfilled") connections.push(outcome.value);
      const failed = settled.find((outcome) => outcome.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    }
  } catch (error) {
    for (const connection of connections) connection.abort();
    throw error;
  }
  return connections;
}

/**
 * Load a server: `connections` connections, `window` frames in flight on each,
 * for `warmup + duration` seconds; measure the last `duration`.
 *
 * @param options What to send and where.
 * @returns The figures of the measured window.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const transport = options.transport ?? await loadTransport();
  const plan = buildPlan(options.mode, options.size, options.expect, options.window);
  const run = new Run();
  const connections = await connectAll(transport, options.host, options.port, options.connections, 64);
  const flows = connections.map((connection, index) => new Flow(index, connection, run, plan, options.window));
  const pid = options.serverPid;
  let result: LoadResult;
  let progressTimer: ReturnType<typeof setInterval> | undefined;
  try {
    const started = performance.now();
    for (const flow of flows) flow.topUp(started);
    const showProgress = (phase: string, since: number, of: number, seenAtStart: number): void => {
      const elapsed = (performance.now() - since) / 1000;
      const rate = elapsed > 0 ? (run.seen - seenAtStart) / elapsed : 0;
      process.stderr.write(
        `\r  ${phase} ${elapsed.toFixed(1)}/${of.toFixed(1)} s  ${Math.round(rate).toLocaleString("en-US")} frames/s  errors ${run.errors}   `,
      );
    };
    if (options.progress) progressTimer = setInterval(() => showProgress("warm-up", started, options.warmup, 0), 250);
    await sleep(options.warmup * 1000);
    if (progressTimer !== undefined) clearInterval(progressTimer);

    const ticks0 = pid === undefined ? undefined : readCpuTicks(pid);
    const cpu0 = cpuMicros();
    const t0 = performance.now();
    const seen0 = run.seen;
    run.measuring = true;
    if (options.progress) progressTimer = setInterval(() => showProgress("measuring", t0, options.duration, seen0), 250);
    await sleep(options.duration * 1000);
    run.measuring = false;
    const t1 = performance.now();
    const cpu1 = cpuMicros();
    const ticks1 = pid === undefined ? undefined : readCpuTicks(pid);
    if (progressTimer !== undefined) clearInterval(progressTimer);
    if (options.progress) process.stderr.write("\r\x1b[K");

    run.stopping = true;
    await settle(run, () => flows.every((flow) => flow.settled), 10_000);
    for (const flow of flows) {
      if (!flow.closed && flow.received < flow.sent) {
        run.error(`connection ${flow.index}: ${flow.sent - flow.received} replies missing 10 s after the run`);
      }
    }
    const peakRssKiB = pid === undefined ? undefined : readStatusKiB(pid, "VmHWM");

    const seconds = (t1 - t0) / 1000;
    const frames = run.frames;
    let server: ServerUsage | undefined;
    if (pid !== undefined && ticks0 !== undefined && ticks1 !== undefined) {
      const hz = clockTicksPerSecond();
      const ticks = ticks1 - ticks0;
      server = {
        pid,
        cpuUsPerFrame: frames > 0 ? (ticks / hz) * 1e6 / frames : 0,
        cpuShare: ticks / hz / seconds,
        ticks,
        ticksPerSecond: hz,
        peakRssKiB,
      };
    }
    result = {
      mode: options.mode,
      size: options.size,
      connections: options.connections,
      window: options.window,
      generator: runtimeVersion(),
      seconds,
      frames,
      framesPerSecond: frames / seconds,
      mbpsIn: run.bytesIn / seconds / 1e6,
      mbpsOut: run.bytesOut / seconds / 1e6,
      p50Us: run.histogram.quantile(0.5),
      p99Us: run.histogram.quantile(0.99),
      maxUs: run.histogram.max,
      generatorCpuUsPerFrame: frames > 0 ? (cpu1 - cpu0) / frames : 0,
      generatorCpuShare: (cpu1 - cpu0) / 1e6 / seconds,
      server,
      errors: 0, // counted after closing, below
      errorSamples: [],
    };
  } finally {
    if (progressTimer !== undefined) clearInterval(progressTimer);
    await closeFlows(run, flows);
  }
  result.errors = run.errors;
  result.errorSamples = run.errorSamples;
  return result;
}

// ---------------------------------------------------------------------------
// Idle sessions

/** Options of {@link runIdle}. */
export interface IdleOptions {
  host: string;
  port: number;
  /** Sessions to open. */
  count: number;
  /** The server's process, for its RSS (required). */
  serverPid: number;
  /** Milliseconds to let the server settle before each RSS reading. */
  settleMs: number;
  transport?: Transport;
}

/** The outcome of {@link runIdle}. */
export interface IdleResult {
  count: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** RSS once the idle sessions have closed again. */
  rssClosedKiB: number;
  /** (after − before) / count. */
  kibPerSession: number;
  /** Seconds it took to open and ping every session. */
  openSeconds: number;
  errors: number;
  errorSamples: string[];
}

/**
 * Open `count` sessions, exchange one small echo frame on each (so that the
 * server has surely accepted and set up every one), leave them idle, and read
 * the server's RSS before and after.
 *
 * @param options Where, how many, and the server's pid.
 * @returns RSS figures.
 */
export async function runIdle(options: IdleOptions): Promise<IdleResult> {
  const transport = options.transport ?? await loadTransport();
  const plan = buildPlan("echo", 16, "tlvkit", 1);
  const run = new Run();
  await sleep(options.settleMs);
  const rssBeforeKiB = readStatusKiB(options.serverPid, "VmRSS") ?? 0;
  const flows: Flow[] = [];
  const opened = performance.now();
  try {
    for (let i = 0; i < options.count; i += 100) {
      const connections = await connectAll(transport, options.host, options.port, Math.min(100, options.count - i), 100);
      const batch = connections.map((connection, j) => new Flow(i + j, connection, run, plan, 1));
      flows.push(...batch);
      // One ping each; the flow's window of 1 sends no more until told to.
      run.stopping = true;
      for (const flow of batch) flow.topUp(performance.now());
      await settle(run, () => batch.every((flow) => flow.settled), 10_000);
      const missing = batch.filter((flow) => !flow.closed && flow.received < flow.sent).length;
      if (missing > 0) run.error(`${missing} idle sessions got no echo within 10 s`);
    }
    const openSeconds = (performance.now() - opened) / 1000;
    await sleep(options.settleMs);
    const rssAfterKiB = readStatusKiB(options.serverPid, "VmRSS") ?? 0;
    await closeFlows(run, flows);
    flows.length = 0;
    await sleep(options.settleMs);
    const rssClosedKiB = readStatusKiB(options.serverPid, "VmRSS") ?? 0;
    return {
      count: options.count,
      rssBeforeKiB,
      rssAfterKiB,
      rssClosedKiB,
      kibPerSession: (rssAfterKiB - rssBeforeKiB) / options.count,
      openSeconds,
      errors: run.errors,
      errorSamples: run.errorSamples,
    };
  } finally {
    if (flows.length > 0) await closeFlows(run, flows);
  }
}

// ---------------------------------------------------------------------------
// Command line

function fmt(value: number, digits = 1): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Human-readable lines for a load result. */
export function describeLoad(result: LoadResult, target: string): string {
  const frameBytes = result.frames > 0 ? result.mbpsIn * 1e6 * result.seconds / result.frames : 0;
  const lines = [
    `tlvkit bench: ${result.mode} ${result.size} B, ${result.connections} connections × ${result.window} in flight, ` +
    `${fmt(result.seconds, 2)} s measured; generator ${result.generator}; server ${target}`,
    `  frames/s         ${fmt(result.framesPerSecond, 0)}`,
    `  MB/s             ${fmt(result.mbpsIn, 2)} in, ${fmt(result.mbpsOut, 2)} out (wire bytes per direction; replies ${fmt(frameBytes, 0)} B/frame)`,
    `  latency          p50 ${fmt(result.p50Us, 0)} µs, p99 ${fmt(result.p99Us, 0)} µs${Number.isFinite(result.maxUs) ? `, max ${fmt(result.maxUs, 0)} µs` : ""} (round trip per frame)`,
    `  generator CPU    ${fmt(result.generatorCpuShare * 100, 0)} % of a core, ${fmt(result.generatorCpuUsPerFrame, 2)} µs/frame`,
  ];
  const server = result.server;
  if (server !== undefined) {
    lines.push(
      `  server CPU       ${fmt(server.cpuShare * 100, 0)} % of a core, ${fmt(server.cpuUsPerFrame, 2)} µs/frame ` +
        `(${server.ticks} ticks of ${fmt(1000 / server.ticksPerSecond, 0)} ms)`,
    );
    if (server.peakRssKiB !== undefined) lines.push(`  server peak RSS  ${fmt(server.peakRssKiB / 1024, 1)} MiB (VmHWM)`);
  }
  lines.push(`  errors           ${result.errors}`);
  for (const sample of result.errorSamples) lines.push(`    ${sample}`);
  return lines.join("\n");
}

/** Human-readable lines for an idle result. */
export function describeIdle(result: IdleResult, target: string): string {
  const lines = [
    `tlvkit bench: ${result.count} idle sessions on server ${target} (opened in ${fmt(result.openSeconds, 2)} s)`,
    `  server RSS       ${fmt(result.rssBeforeKiB / 1024, 1)} MiB before, ${fmt(result.rssAfterKiB / 1024, 1)} MiB with the sessions, ` +
    `${fmt(result.rssClosedKiB / 1024, 1)} MiB after closing them`,
    `  per session      ${fmt(result.kibPerSession, 1)} KiB`,
    `  errors           ${result.errors}`,
  ];
  for (const sample of result.errorSamples) lines.push(`    ${sample}`);
  return lines.join("\n");
}

const USAGE = `Usage: bench.ts [--host H --port P [--pid PID] | --server tlvkit|handler|handler-json|raw --runtime node|deno|bun | --server netty]
                [--connections 16] [--window 16] [--size 64] [--duration 5] [--warmup 1]
                [--mode echo|hello|hello-styled|json] [--expect tlvkit|raw] [--generator native|js] [--idle N] [--workers N]
                [--no-pin] [--json]`;

class UsageError extends Error {}

function numberOption(name: string, text: string | undefined, fallback: number, min: number, max: number, integer: boolean): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(Number.isFinite(value) && value >= min && value <= max && (!integer || Number.isInteger(value)))) {
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"} from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

function choice<T extends string>(name: string, text: string | undefined, choices: readonly T[], fallback: T): T {
  if (text === undefined) return fallback;
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got "${text}"`);
  return text as T;
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        pid: { type: "string" },
        server: { type: "string" },
        runtime: { type: "string" },
        connections: { type: "string" },
        window: { type: "string" },
        size: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        mode: { type: "string" },
        expect: { type: "string" },
        idle: { type: "string" },
        generator: { type: "string" },
        workers: { type: "string" },
        "no-pin": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  let options: LoadOptions;
  let serverKind: ServerKind | undefined;
  let serverRuntime: RuntimeName | undefined;
  let idle: number | undefined;
  let generator: "native" | "js";
  let workers = 1;
  try {
    serverKind = values.server === undefined ? undefined : choice("server", values.server, SERVER_KINDS, "tlvkit");
    serverRuntime = values.runtime === undefined ? undefined : choice("runtime", values.runtime, RUNTIMES, "node");
    if (serverKind !== undefined && values.port !== undefined) throw new UsageError("use either --port (attach) or --server (start one), not both");
    if (serverKind === undefined && serverRuntime !== undefined) throw new UsageError("--runtime needs --server tlvkit|handler|handler-json|raw");
    if (serverKind === "netty" && serverRuntime !== undefined) throw new UsageError("--server netty runs on the JVM: leave out --runtime");
    if (serverKind !== undefined && values.pid !== undefined) throw new UsageError("--pid is for a server you attach to with --port");
    const mode = choice("mode", values.mode, LOAD_MODES, "echo");
    if (mode.startsWith("hello") && serverKind !== undefined && serverKind !== "tlvkit") throw new UsageError(`--mode ${mode} needs --server tlvkit (a ${serverKind} server does not answer HELLO)`);
    if (mode === "json" && serverKind !== undefined && serverKind !== "handler-json") throw new UsageError(`--mode json needs --server handler-json (a ${serverKind} server does not answer JSON)`);
    if (serverKind === "handler-json" && (mode !== "json" || values.idle !== undefined)) throw new UsageError("--server handler-json answers JSON objects only: use --mode json (and not --idle)");
    const size = numberOption("size", values.size, 64, mode === "echo" ? 0 : 16, mode === "echo" ? 65_535 : 60_000, true);
    idle = values.idle === undefined ? undefined : numberOption("idle", values.idle, 1000, 1, 100_000, true);
    workers = numberOption("workers", values.workers, 1, 1, 256, true);
    if (workers > 1 && serverKind !== "tlvkit") throw new UsageError("--workers needs --server tlvkit");
    if (workers > 1 && idle !== undefined) throw new UsageError("--idle reads one process's RSS: use it without --workers");
    options = {
      host: values.host ?? "127.0.0.1",
      port: numberOption("port", values.port, 10086, 1, 65535, true),
      connections: numberOption("connections", values.connections, 16, 1, 10_000, true),
      window: numberOption("window", values.window, 16, 1, 4096, true),
      size,
      duration: numberOption("duration", values.duration, 5, 0.1, 3600, false),
      warmup: numberOption("warmup", values.warmup, 1, 0, 600, false),
      mode,
      expect: choice("expect", values.expect, ["tlvkit", "raw"] as const, serverKind === undefined ? "tlvkit" : replyShape(serverKind)),
      serverPid: values.pid === undefined ? undefined : numberOption("pid", values.pid, 0, 1, 2 ** 22, true),
      progress: process.stderr.isTTY === true && !values.json,
    };
    generator = choice("generator", values.generator, ["native", "js"] as const, "native");
    if (idle !== undefined && options.serverPid === undefined && serverKind === undefined) {
      throw new UsageError("--idle reads the server's RSS: start it with --server, or give --pid");
    }
  } catch (error) {
    if (!(error instanceof UsageError) && !(error instanceof RangeError)) throw error;
    console.error(`bench: ${error.message}\n${USAGE}`);
    return 2;
  }

  const stopOnSignal = (): void => {
    void stopAllServers().finally(() => process.exit(130));
  };
  process.on("SIGINT", stopOnSignal);
  process.on("SIGTERM", stopOnSignal);
  process.on("exit", killAllServersNow);

  let server: ServerProcess | undefined;
  try {
    let target = `${options.host}:${options.port}`;
    let native: string | undefined;
    if (generator === "native" && idle === undefined) {
      const found = nativeGenerator(ROOT);
      if (found.path !== undefined) native = found.path;
      else console.error(`bench: ${found.reason}; using the JavaScript generator`);
    }
    // Workers are meant to spread over every core: nothing is pinned then.
    const pin = serverKind !== undefined && !values["no-pin"] && workers === 1 && canPin();
    if (serverKind !== undefined) {
      const runtime = serverRuntime ?? detectRuntime();
      server = await startServer(serverKind, runtime, pin ? 1 : undefined, workers);
      if (pin && native === undefined && !pinSelf(0)) console.error("bench: could not pin the generator to CPU 0; figures are noisier");
      options.host = server.host;
      options.port = server.port;
      // With workers, the process started is the supervisor, whose CPU and RSS say nothing of the serving.
      options.serverPid = workers === 1 ? server.pid : undefined;
      target = `${serverKind === "netty" ? "netty on the JVM" : `${serverKind} on ${runtime}`} (pid ${server.pid}${workers > 1 ? `, ${workers} workers` : ""}` +
        `${server.cpu !== undefined ? `, CPU ${server.cpu}; generator on CPU 0` : ", not pinned"})`;
      await sleep(300); // let the server finish starting up before anything is measured
    }
    if (idle !== undefined) {
      const result = await runIdle({ host: options.host, port: options.port, count: idle, serverPid: options.serverPid!, settleMs: 500 });
      if (values.json) console.log(JSON.stringify({ kind: "idle", serverKind: serverKind ?? null, serverRuntime: serverRuntime ?? null, ...result }));
      else console.log(describeIdle(result, target));
      return result.errors === 0 ? 0 : 1;
    }
    const result = native !== undefined ? await runNativeLoad(ROOT, native, options, pin ? 0 : undefined) : await runLoad(options);
    if (values.json) console.log(JSON.stringify({ kind: "load", serverKind: serverKind ?? null, serverRuntime: serverRuntime ?? null, ...result }));
    else console.log(describeLoad(result, target));
    return result.errors === 0 ? 0 : 1;
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    if (server !== undefined && server.stderr().length > 0) console.error(`server stderr: ${server.stderr().slice(-1000)}`);
    return 1;
  } finally {
    await stopAllServers();
  }
}

const entry = process.argv[1];
if (entry !== undefined && resolve(entry) === fileURLToPath(import.meta.url)) {
  const code = await main();
  process.exit(code);
}
