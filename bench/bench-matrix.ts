/**
 * tlvkit against the ceiling, on every runtime: for Node.js, Deno and Bun it
 * runs tlvkit servers and the raw unframed echo of `bench/raw-echo/` side by
 * side, interleaved (within a case every contender runs twice, in mirrored
 * order: raw, tlvkit serve, handler echo, handler echo, tlvkit serve, raw;
 * each figure the better of its two runs; fresh servers for every case), over
 * several rounds, and reports medians. The tlvkit servers: `tlvkit serve` (the
 * bundled app: echo and HELLO), and an application's server with an ordinary
 * handler, `bench/handler-echo.ts` (`--app echo`:
 * `server.fallback((r) => r.reply(r.body))`; `--app json`: a JSON
 * request/response handler).
 *
 * | case | connections × in flight | runs | figures (targets) |
 * | --- | --- | --- | --- |
 * | 64 B echo | 16 × 16 | raw, tlvkit serve, handler echo (and Netty) | server CPU per frame, handler echo ÷ raw (≤ 1.3) and ÷ Netty (< 1); the same for tlvkit serve |
 * | 4 KiB echo | 16 × 4 | raw, tlvkit serve, handler echo | MB/s, handler echo ÷ raw (≥ 0.9); the same for tlvkit serve |
 * | 64 B messages | 16 × 16 | handler echo, HELLO and HELLO indented (tlvkit serve), JSON handler | server CPU per frame, each ÷ the handler echo's (≤ 3) |
 * | 1,000 idle sessions | — | raw, tlvkit serve | server RSS growth per session: tlvkit's (≤ 8 KiB), and ÷ raw's (≤ 2) |
 *
 * HELLO is sent compact (`--mode hello`) and indented as jsoncpp's
 * `toStyledString` writes it (`hello-styled`); the JSON handler gets `json`
 * (see `LoadMode` in `bench.ts`). The native generator
 * (`bench/native-load/loadgen.c`) runs every mode: it sends and checks byte
 * for byte the frames that `bench.ts` plans for it, whatever they hold.
 *
 * The 64 B case also runs the Netty 4.1 TLV echo of `bench/netty-echo/`
 * (raw, tlvkit serve, handler echo, Netty, Netty, handler echo, tlvkit serve,
 * raw; at least 8 s of warm-up for the JIT) when a JDK and Netty's jars are
 * there (`bench/netty-echo.ts`); without them the matrix says why in one line
 * and leaves the Netty rows out.
 *
 * On Node.js every server runs compiled, as npm users run it: tlvkit from the
 * package `npm run build:npm` builds into `dist/npm/`, the benchmark servers
 * compiled against it, built once at the start (`bench/node-build.ts`). Deno
 * and Bun run the TypeScript. Servers run pinned to CPU 1 (`taskset -c 1`),
 * the load generator on CPU 0: the native generator when there is a C
 * compiler, else `bench/bench.ts` in this process, on Node. Without `taskset`
 * or a second CPU nothing is pinned.
 *
 * ```sh
 * npm run bench:quick     # 1 short round per runtime (about 30 s each): prints the ratios, writes nothing
 * npm run bench:matrix    # 3 rounds (about 25-40 minutes): tables on stdout, BENCHMARKS.md, docs/benchmarks.svg
 * node --import tsx bench/bench-matrix.ts --rounds 5 --runtimes node,bun --duration 10
 * ```
 *
 * Options: `--rounds 3`, `--runtimes node,deno,bun`, `--duration 4` and
 * `--warmup 1` (seconds per load run; 4 s rather than 5 since the handler
 * and message runs were added, to keep 3 rounds under 50 minutes), `--idle
 * 1000` (idle sessions), `--quick` (1 round of 1 s runs, ratios only, no
 * files, no Netty), `--no-write` (full tables on stdout, no files: for reruns
 * of one runtime), `--no-netty`.
 *
 * Ratios are computed per round (each from runs next to each other in one
 * case) and the median of the rounds is reported, with the lowest and highest
 * round beside it: a wide spread means the machine was busy, so rerun.
 * A case in which a contender's two runs differ by more than 15 % in server
 * CPU per frame caught the machine changing pace, and is run again (at most
 * twice; not with `--quick`); BENCHMARKS.md lists those repeats.
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import type { RuntimeName } from "../mod.ts";
import {
  canPin,
  clockTicksPerSecond,
  type IdleResult,
  killAllServersNow,
  type LoadMode,
  type LoadOptions,
  type LoadResult,
  pinSelf,
  readStatusKiB,
  replyShape,
  ROOT,
  runIdle,
  runLoad,
  serverCommand,
  type ServerKind,
  type ServerProcess,
  startServer,
  stopAllServers,
} from "./bench.ts";
import { nativeGenerator, runNativeLoad } from "./native-load.ts";
import { nettyEcho, nettyVersion } from "./netty-echo.ts";
import { buildNodeServers } from "./node-build.ts";

// ---------------------------------------------------------------------------
// Options

const USAGE = "Usage: bench-matrix.ts [--quick] [--rounds 3] [--runtimes node,deno,bun] [--duration 4] [--warmup 1] [--idle 1000] [--no-netty] [--no-write]";

interface MatrixOptions {
  quick: boolean;
  /** Write BENCHMARKS.md and docs/benchmarks.svg (never with --quick). */
  write: boolean;
  rounds: number;
  runtimes: RuntimeName[];
  duration: number;
  warmup: number;
  idle: number;
  /** Milliseconds the server is left alone before each RSS reading. */
  settleMs: number;
  /** Run the Netty TLV echo next to raw and tlvkit in the 64 B case (never with --quick). */
  netty: boolean;
}

function parseOptions(): MatrixOptions {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: "boolean", default: false },
      rounds: { type: "string" },
      runtimes: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      idle: { type: "string" },
      "no-write": { type: "boolean", default: false },
      "no-netty": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const quick = values.quick;
  const num = (name: string, text: string | undefined, fallback: number, min: number, max: number): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!(Number.isFinite(value) && value >= min && value <= max)) throw new RangeError(`--${name} must be from ${min} to ${max}, got "${text}"`);
    return value;
  };
  const runtimes = (values.runtimes ?? "node,deno,bun").split(",").map((name) => name.trim());
  for (const name of runtimes) {
    if (name !== "node" && name !== "deno" && name !== "bun") throw new RangeError(`--runtimes: unknown runtime "${name}"`);
  }
  return {
    quick,
    write: !quick && !values["no-write"],
    rounds: Math.round(num("rounds", values.rounds, quick ? 1 : 3, 1, 50)),
    runtimes: runtimes as RuntimeName[],
    duration: num("duration", values.duration, quick ? 1 : 4, 0.2, 600),
    warmup: num("warmup", values.warmup, quick ? 0.25 : 1, 0, 60),
    idle: Math.round(num("idle", values.idle, 1000, 1, 10_000)),
    settleMs: quick ? 200 : 500,
    netty: !quick && !values["no-netty"],
  };
}

// ---------------------------------------------------------------------------
// Running

/** What the results and tables call each contender. */
type ContenderName = "raw" | "tlvkit" | "handler" | "netty" | "hello" | "hello-styled" | "json";

/** One server under one kind of load, within a case. */
interface Contender {
  readonly name: ContenderName;
  /** What the tables call it. */
  readonly label: string;
  readonly server: ServerKind;
  readonly mode: LoadMode;
}

const RAW: Contender = { name: "raw", label: "raw echo", server: "raw", mode: "echo" };
const BUNDLED: Contender = { name: "tlvkit", label: "tlvkit serve (bundled echo)", server: "tlvkit", mode: "echo" };
const HANDLER: Contender = { name: "handler", label: "handler echo", server: "handler", mode: "echo" };
const NETTY: Contender = { name: "netty", label: "Netty echo", server: "netty", mode: "echo" };
const HELLO: Contender = { name: "hello", label: "HELLO (tlvkit serve)", server: "tlvkit", mode: "hello" };
const HELLO_STYLED: Contender = { name: "hello-styled", label: "HELLO indented (tlvkit serve)", server: "tlvkit", mode: "hello-styled" };
const JSON_HANDLER: Contender = { name: "json", label: "JSON handler", server: "handler-json", mode: "json" };

interface LoadCase {
  readonly key: "echo64" | "echo4k" | "messages";
  readonly label: string;
  /** Body bytes (for HELLO and JSON, about the request body's). */
  readonly size: number;
  readonly connections: number;
  readonly window: number;
  /** Contenders, in the order of the case's first half (the second half reverses it). */
  readonly contenders: readonly Contender[];
}

const CASES: readonly LoadCase[] = [
  { key: "echo64", label: "64 B echo", size: 64, connections: 16, window: 16, contenders: [RAW, BUNDLED, HANDLER] },
  { key: "echo4k", label: "4 KiB echo", size: 4096, connections: 16, window: 4, contenders: [RAW, BUNDLED, HANDLER] },
  { key: "messages", label: "64 B messages", size: 64, connections: 16, window: 16, contenders: [HANDLER, HELLO, HELLO_STYLED, JSON_HANDLER] },
];

type CaseKey = LoadCase["key"];

/** Seconds of load a Netty server gets before it is measured, at least: time for the JVM's JIT. */
const NETTY_WARMUP = 8;

/**
 * A contender whose two runs in one case differ by more than this factor in
 * CPU per frame ran in two different paces of the machine (see the next comment).
 */
const UNSTEADY_ABOVE = 1.15;
/** How often a case is run again, at most, when it was unsteady. */
const MAX_CASE_REPEATS = 2;

/**
 * Why a case's runs cannot be compared, if they cannot: a contender's two
 * runs differ by more than {@link UNSTEADY_ABOVE} in server CPU per frame.
 * The machine these figures come from switches between paces for a minute or
 * so at a time (the same raw Bun echo at 3.6 and at 5.9 µs per 4 KiB frame,
 * Deno's at 3.4 and 4.6): a round whose raw runs caught one pace and whose
 * tlvkit runs the other gives a ratio of the machine, not of the servers (Bun
 * 4 KiB rounds of 0.61 and 1.12 in one matrix). The check is the same for
 * every contender, whichever way the ratio would move. Netty is left out: its
 * first run may still be warming its JIT.
 */
function unsteadyRuns(runs: Partial<Record<ContenderName, LoadResult[]>>): string | undefined {
  const reasons: string[] = [];
  for (const [name, list] of Object.entries(runs) as Array<[ContenderName, LoadResult[]]>) {
    if (name === "netty" || list.length < 2) continue;
    const costs = list.map((run) => run.server?.cpuUsPerFrame ?? NaN);
    const low = Math.min(...costs);
    const high = Math.max(...costs);
    if (high / low > UNSTEADY_ABOVE) reasons.push(`${name} ${costs.map((cost) => fmt(cost, 2)).join(" and ")} µs/frame`);
  }
  return reasons.length === 0 ? undefined : reasons.join(", ");
}

/** The contenders of a case in this matrix: the 64 B echo also Netty's when asked. */
function caseContenders(loadCase: LoadCase, options: MatrixOptions): readonly Contender[] {
  return options.netty && loadCase.key === "echo64" ? [...loadCase.contenders, NETTY] : loadCase.contenders;
}

/** The servers the idle sessions are measured on. */
type IdleKind = "raw" | "tlvkit";
const IDLE_KINDS: readonly IdleKind[] = ["raw", "tlvkit"];

/** One round on one runtime. */
interface Round {
  load: Record<CaseKey, Partial<Record<ContenderName, LoadResult>>>;
  idle: Partial<Record<IdleKind, IdleResult>>;
  /** Highest VmHWM of each kind of server over the round (fresh servers per case), KiB. */
  peakRssKiB: Partial<Record<ServerKind, number>>;
  /** Cases run again because the machine changed pace within them (see {@link unsteadyRuns}). */
  repeats: string[];
  /** Cases still unsteady after the last repeat, kept as they are. */
  unsteady: string[];
}

interface Failure {
  where: string;
  messages: string[];
}

function fmt(value: number | undefined, digits = 1): string {
  if (value === undefined || !Number.isFinite(value)) return "n/a";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

async function runRound(runtime: RuntimeName, round: number, options: MatrixOptions, log: (line: string) => void, failures: Failure[]): Promise<Round> {
  const result: Round = { load: { echo64: {}, echo4k: {}, messages: {} }, idle: {}, peakRssKiB: {}, repeats: [], unsteady: [] };
  const pin = canPin() ? 1 : undefined;
  const native = nativeGenerator(ROOT).path;
  let servers: Partial<Record<ServerKind, ServerProcess>> = {};
  const stopAll = (): Promise<unknown> => Promise.all(Object.values(servers).map((server) => server.stop()));
  const startServers = async (kinds: readonly ServerKind[]): Promise<void> => {
    const started = await Promise.allSettled(kinds.map((kind) => startServer(kind, runtime, pin)));
    started.forEach((outcome, i) => {
      if (outcome.status === "fulfilled") servers[kinds[i]!] = outcome.value;
    });
    const failed = started.find((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  };
  const stopServers = async (): Promise<void> => {
    for (const [kind, server] of Object.entries(servers) as Array<[ServerKind, ServerProcess]>) {
      const peak = readStatusKiB(server.pid, "VmHWM");
      if (peak !== undefined) result.peakRssKiB[kind] = Math.max(result.peakRssKiB[kind] ?? 0, peak);
    }
    await stopAll();
    servers = {};
  };
  try {
    const where = (what: string, name: string): string => `${runtime} round ${round} ${what} ${name}`;
    // Every case on fresh servers: a server's history (Node's raw echo once ran
    // its 4 KiB case at 17-21 µs/frame after the idle and 64 B cases, against
    // 5-7 fresh) must not weigh on one side. Idle sessions first.
    await startServers(IDLE_KINDS);
    for (const kind of IDLE_KINDS) {
      const server = servers[kind]!;
      const idle = await runIdle({ host: server.host, port: server.port, count: options.idle, serverPid: server.pid, settleMs: options.settleMs });
      result.idle[kind] = idle;
      if (idle.errors > 0) failures.push({ where: where("idle", kind), messages: idle.errorSamples });
      log(`  ${where(`${options.idle} idle`, kind)}: ${fmt(idle.kibPerSession)} KiB/session (RSS ${fmt(idle.rssBeforeKiB / 1024)} → ${fmt(idle.rssAfterKiB / 1024)} MiB)`);
    }
    for (const loadCase of CASES) {
      const contenders = caseContenders(loadCase, options);
      const kinds = [...new Set(contenders.map((contender) => contender.server))];
      for (let attempt = 0;; attempt++) {
        await stopServers();
        await startServers(kinds);
        // A, B, C, C, B, A: a machine that drifts (or flips into a slower state) during
        // a case weighs on every contender alike, and each figure is the better of two runs.
        const order = [...contenders, ...[...contenders].reverse()];
        const runs: Partial<Record<ContenderName, LoadResult[]>> = {};
        for (const contender of order) {
          const server = servers[contender.server]!;
          const loadOptions: LoadOptions = {
            host: server.host,
            port: server.port,
            connections: loadCase.connections,
            window: loadCase.window,
            size: loadCase.size,
            duration: options.duration,
            warmup: contender.server === "netty" ? Math.max(options.warmup, NETTY_WARMUP) : options.warmup,
            mode: contender.mode,
            expect: replyShape(contender.server),
            serverPid: server.pid,
            progress: false,
          };
          const load = native !== undefined
            ? await runNativeLoad(ROOT, native, loadOptions, pin === undefined ? undefined : 0)
            : await runLoad(loadOptions);
          (runs[contender.name] ??= []).push(load);
          if (load.errors > 0) failures.push({ where: where(loadCase.label, contender.label), messages: load.errorSamples });
          log(
            `  ${where(loadCase.label, contender.label)}: ${fmt(load.framesPerSecond, 0)} frames/s, ${fmt(load.mbpsIn, 1)} MB/s, ` +
              `server ${fmt(load.server?.cpuUsPerFrame, 2)} µs/frame at ${fmt((load.server?.cpuShare ?? NaN) * 100, 0)} %, ` +
              `generator ${fmt(load.generatorCpuShare * 100, 0)} %, errors ${load.errors}`,
          );
        }
        const unsteady = options.quick ? undefined : unsteadyRuns(runs);
        if (unsteady !== undefined) {
          const repeat = attempt < MAX_CASE_REPEATS;
          const which = `${runtime} round ${round} ${loadCase.label}`;
          log(`  ${which}: ${repeat ? "unsteady" : "still unsteady"} (${unsteady}); ${repeat ? "repeating the case" : "kept"}`);
          (repeat ? result.repeats : result.unsteady).push(`${which}: ${unsteady}`);
          if (repeat) continue;
        }
        for (const [name, list] of Object.entries(runs) as Array<[ContenderName, LoadResult[]]>) {
          result.load[loadCase.key][name] = list.reduce(bestOf);
        }
        break;
      }
    }
    await stopServers();
  } finally {
    await stopAll();
    await stopAllServers();
  }
  return result;
}

/**
 * Two runs of one case as one: each figure the better of the two (the lower
 * cost, the higher throughput), errors added up; the CPU shares, which are
 * context rather than a score, come from the run with the lower server CPU
 * per frame. On a shared machine noise only ever adds cost (another tenant,
 * a slower phase of the host), so the better run is the nearer estimate of
 * what the server itself costs; a mean let one disturbed run of a pair move a
 * round's ratio by 20–50 %.
 */
function bestOf(a: LoadResult, b: LoadResult): LoadResult {
  const cheaper = (a.server?.cpuUsPerFrame ?? Infinity) < (b.server?.cpuUsPerFrame ?? Infinity) ? a : b;
  const server = a.server !== undefined && b.server !== undefined
    ? {
      ...cheaper.server!,
      cpuUsPerFrame: Math.min(a.server.cpuUsPerFrame, b.server.cpuUsPerFrame),
      ticks: a.server.ticks + b.server.ticks,
    }
    : a.server ?? b.server;
  return {
    ...b,
    seconds: a.seconds + b.seconds,
    frames: a.frames + b.frames,
    framesPerSecond: Math.max(a.framesPerSecond, b.framesPerSecond),
    mbpsIn: Math.max(a.mbpsIn, b.mbpsIn),
    mbpsOut: Math.max(a.mbpsOut, b.mbpsOut),
    p50Us: Math.min(a.p50Us, b.p50Us),
    p99Us: Math.min(a.p99Us, b.p99Us),
    maxUs: Math.min(a.maxUs, b.maxUs),
    generatorCpuUsPerFrame: Math.min(a.generatorCpuUsPerFrame, b.generatorCpuUsPerFrame),
    generatorCpuShare: cheaper.generatorCpuShare,
    server,
    errors: a.errors + b.errors,
    errorSamples: [...a.errorSamples, ...b.errorSamples].slice(0, 5),
  };
}

// ---------------------------------------------------------------------------
// Statistics

function median(values: number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(values: number[]): Spread {
  const finite = values.filter((value) => Number.isFinite(value));
  return {
    median: median(finite),
    min: finite.length > 0 ? Math.min(...finite) : NaN,
    max: finite.length > 0 ? Math.max(...finite) : NaN,
  };
}

interface Ratios {
  /** 64 B echo, server CPU/frame: the handler echo ÷ raw, ÷ Netty (NaN without Netty runs). */
  handler64: Spread;
  handler64Netty: Spread;
  /** The same for `tlvkit serve`'s bundled echo. */
  bundled64: Spread;
  bundled64Netty: Spread;
  /** 4 KiB echo, MB/s ÷ raw. */
  handler4k: Spread;
  bundled4k: Spread;
  /** Server CPU/frame ÷ the handler echo's, in the 64 B messages case. */
  hello: Spread;
  helloStyled: Spread;
  json: Spread;
  idleTlvkit: Spread;
  idleRaw: Spread;
  /** tlvkit's RSS per idle session ÷ the raw echo's. */
  idleRatio: Spread;
}

function ratiosOf(rounds: Round[]): Ratios {
  const per = (f: (round: Round) => number | undefined): Spread => spread(rounds.map((round) => f(round) ?? NaN));
  const divide = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  /** Server CPU per frame of contender `a` ÷ that of `b`, in case `key`. */
  const cpu = (key: CaseKey, a: ContenderName, b: ContenderName): Spread =>
    per((r) => divide(r.load[key][a]?.server?.cpuUsPerFrame, r.load[key][b]?.server?.cpuUsPerFrame));
  const mbps = (key: CaseKey, a: ContenderName, b: ContenderName): Spread => per((r) => divide(r.load[key][a]?.mbpsIn, r.load[key][b]?.mbpsIn));
  return {
    handler64: cpu("echo64", "handler", "raw"),
    handler64Netty: cpu("echo64", "handler", "netty"),
    bundled64: cpu("echo64", "tlvkit", "raw"),
    bundled64Netty: cpu("echo64", "tlvkit", "netty"),
    handler4k: mbps("echo4k", "handler", "raw"),
    bundled4k: mbps("echo4k", "tlvkit", "raw"),
    hello: cpu("messages", "hello", "handler"),
    helloStyled: cpu("messages", "hello-styled", "handler"),
    json: cpu("messages", "json", "handler"),
    idleTlvkit: per((r) => r.idle.tlvkit?.kibPerSession),
    idleRaw: per((r) => r.idle.raw?.kibPerSession),
    idleRatio: per((r) => divide(r.idle.tlvkit?.kibPerSession, r.idle.raw?.kibPerSession)),
  };
}

interface RatioRow {
  label: string;
  target: string;
  value: (ratios: Ratios) => Spread;
  pass: (value: number) => boolean;
  digits: number;
  /** Left out of the tables when no runtime has a figure for it. */
  optional?: boolean;
}

const RATIO_ROWS: readonly RatioRow[] = [
  { label: "64 B handler echo: server CPU/frame ÷ raw", target: "≤ 1.3", value: (r) => r.handler64, pass: (v) => v <= 1.3, digits: 2 },
  { label: "64 B handler echo: server CPU/frame ÷ Netty", target: "< 1", value: (r) => r.handler64Netty, pass: (v) => v < 1, digits: 2, optional: true },
  { label: "64 B tlvkit serve: server CPU/frame ÷ raw", target: "≤ 1.3", value: (r) => r.bundled64, pass: (v) => v <= 1.3, digits: 2 },
  { label: "64 B tlvkit serve: server CPU/frame ÷ Netty", target: "< 1", value: (r) => r.bundled64Netty, pass: (v) => v < 1, digits: 2, optional: true },
  { label: "4 KiB handler echo: MB/s ÷ raw", target: "≥ 0.9", value: (r) => r.handler4k, pass: (v) => v >= 0.9, digits: 2 },
  { label: "4 KiB tlvkit serve: MB/s ÷ raw", target: "≥ 0.9", value: (r) => r.bundled4k, pass: (v) => v >= 0.9, digits: 2 },
  { label: "HELLO: server CPU/frame ÷ handler echo", target: "≤ 3", value: (r) => r.hello, pass: (v) => v <= 3, digits: 2 },
  { label: "HELLO indented: server CPU/frame ÷ handler echo", target: "≤ 3", value: (r) => r.helloStyled, pass: (v) => v <= 3, digits: 2 },
  { label: "JSON handler: server CPU/frame ÷ handler echo", target: "≤ 3", value: (r) => r.json, pass: (v) => v <= 3, digits: 2 },
  { label: "idle session: tlvkit server RSS, KiB", target: "≤ 8", value: (r) => r.idleTlvkit, pass: (v) => v <= 8, digits: 1 },
  { label: "idle session: raw server RSS, KiB (reference)", target: "", value: (r) => r.idleRaw, pass: () => true, digits: 1 },
  { label: "idle session: RSS, tlvkit ÷ raw", target: "≤ 2", value: (r) => r.idleRatio, pass: (v) => v <= 2, digits: 2 },
];

function ratioCell(row: RatioRow, ratios: Ratios, withSpread: boolean): string {
  const value = row.value(ratios);
  if (!Number.isFinite(value.median)) return "n/a";
  const mark = row.target === "" ? "" : row.pass(value.median) ? " ✓" : " ✗";
  const range = withSpread && value.max > value.min ? ` (${fmt(value.min, row.digits)}–${fmt(value.max, row.digits)})` : "";
  return `${fmt(value.median, row.digits)}${mark}${range}`;
}

// ---------------------------------------------------------------------------
// Tables

function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("   ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("   "), ...rows.map(line)].join("\n");
}

function markdownTable(header: string[], rows: string[][], alignRightFrom = 1): string {
  const align = header.map((_, i) => (i >= alignRightFrom ? "---:" : "---"));
  return [`| ${header.join(" | ")} |`, `| ${align.join(" | ")} |`, ...rows.map((row) => `| ${row.join(" | ")} |`)].join("\n");
}

function ratioTable(results: Map<RuntimeName, Round[]>, withSpread: boolean): { header: string[]; rows: string[][] } {
  const runtimes = [...results.keys()];
  const ratios = runtimes.map((runtime) => ratiosOf(results.get(runtime)!));
  return {
    header: ["figure (median of rounds)", ...runtimes, "target"],
    rows: RATIO_ROWS
      .filter((row) => !row.optional || ratios.some((r) => Number.isFinite(row.value(r).median)))
      .map((row) => [row.label, ...ratios.map((r) => ratioCell(row, r, withSpread)), row.target]),
  };
}

function absoluteTable(results: Map<RuntimeName, Round[]>, options: MatrixOptions): { header: string[]; rows: string[][] } {
  const rows: string[][] = [];
  for (const [runtime, rounds] of results) {
    for (const loadCase of CASES) {
      for (const contender of caseContenders(loadCase, options)) {
        const runs = rounds.map((round) => round.load[loadCase.key][contender.name]).filter((run): run is LoadResult => run !== undefined);
        if (runs.length === 0) continue;
        const m = (f: (run: LoadResult) => number | undefined): number => median(runs.map((run) => f(run) ?? NaN));
        rows.push([
          runtime,
          `${loadCase.label} (${loadCase.connections}×${loadCase.window})`,
          contender.label,
          fmt(m((r) => r.framesPerSecond), 0),
          fmt(m((r) => r.mbpsIn), 1),
          fmt(m((r) => r.server?.cpuUsPerFrame), 2),
          `${fmt(m((r) => r.server?.cpuShare) * 100, 0)} %`,
          `${fmt(m((r) => r.generatorCpuShare) * 100, 0)} %`,
          fmt(m((r) => r.p50Us), 0),
          fmt(m((r) => r.p99Us), 0),
          String(runs.reduce((sum, run) => sum + run.errors, 0)),
        ]);
      }
    }
  }
  return {
    header: ["runtime", "case (conns×window)", "server", "frames/s", "MB/s", "server µs/frame", "server CPU", "generator CPU", "p50 µs", "p99 µs", "errors"],
    rows,
  };
}

/** What the memory table calls each server. */
const SERVER_LABELS: Record<ServerKind, string> = {
  raw: "raw echo",
  tlvkit: "tlvkit serve",
  handler: "handler echo",
  "handler-json": "JSON handler",
  netty: "Netty echo",
};

function memoryTable(results: Map<RuntimeName, Round[]>): { header: string[]; rows: string[][] } {
  const rows: string[][] = [];
  for (const [runtime, rounds] of results) {
    for (const kind of ["raw", "tlvkit", "handler", "handler-json", "netty"] as const) {
      const peak = median(rounds.map((round) => round.peakRssKiB[kind] ?? NaN)) / 1024;
      const idles = (IDLE_KINDS as readonly ServerKind[]).includes(kind)
        ? rounds.map((round) => round.idle[kind as IdleKind]).filter((idle): idle is IdleResult => idle !== undefined)
        : [];
      if (idles.length === 0 && !Number.isFinite(peak)) continue;
      const m = (f: (idle: IdleResult) => number): string => (idles.length === 0 ? "—" : fmt(median(idles.map(f)), 1));
      rows.push([
        runtime,
        SERVER_LABELS[kind],
        m((i) => i.rssBeforeKiB / 1024),
        m((i) => i.rssAfterKiB / 1024),
        m((i) => i.kibPerSession),
        m((i) => i.rssClosedKiB / 1024),
        fmt(peak, 1),
      ]);
    }
  }
  return {
    header: ["runtime", "server", "RSS before, MiB", "with idle sessions, MiB", "KiB/session", "after closing, MiB", "peak RSS after all loads, MiB"],
    rows,
  };
}

// ---------------------------------------------------------------------------
// SVG chart, drawn by hand

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const COLORS: Record<RuntimeName, string> = { node: "#3c873a", deno: "#222222", bun: "#d9822b" };

function svgChart(results: Map<RuntimeName, Round[]>): string {
  const runtimes = [...results.keys()];
  const ratios = new Map(runtimes.map((runtime) => [runtime, ratiosOf(results.get(runtime)!)]));
  const panels: Array<{ title: string; subtitle: string; target: number; better: "lower" | "higher"; value: (r: Ratios) => Spread; digits: number }> = [
    { title: "64 B handler echo", subtitle: "server CPU/frame ÷ raw", target: 1.3, better: "lower", value: (r) => r.handler64, digits: 2 },
    { title: "4 KiB handler echo", subtitle: "MB/s ÷ raw", target: 0.9, better: "higher", value: (r) => r.handler4k, digits: 2 },
    { title: "Idle session", subtitle: "tlvkit server RSS, KiB", target: 8, better: "lower", value: (r) => r.idleTlvkit, digits: 1 },
    { title: "Idle session", subtitle: "RSS, tlvkit ÷ raw", target: 2, better: "lower", value: (r) => r.idleRatio, digits: 2 },
    { title: "HELLO", subtitle: "CPU/frame ÷ handler echo", target: 3, better: "lower", value: (r) => r.hello, digits: 2 },
    { title: "HELLO indented", subtitle: "CPU/frame ÷ handler echo", target: 3, better: "lower", value: (r) => r.helloStyled, digits: 2 },
    { title: "JSON handler", subtitle: "CPU/frame ÷ handler echo", target: 3, better: "lower", value: (r) => r.json, digits: 2 },
  ];
  const columns = 4;
  const panelWidth = 230;
  const panelHeight = 290;
  const width = panelWidth * columns + 20;
  const height = panelHeight * Math.ceil(panels.length / columns) + 30;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  panels.forEach((panel, p) => {
    const x0 = 10 + (p % columns) * panelWidth;
    const y0 = Math.floor(p / columns) * panelHeight;
    const top = y0 + 62;
    const bottom = y0 + 250;
    const values = runtimes.map((runtime) => panel.value(ratios.get(runtime)!));
    const highest = Math.max(panel.target, ...values.map((v) => (Number.isFinite(v.max) ? v.max : 0)));
    const scale = (bottom - top) / (highest * 1.15 || 1);
    parts.push(`<text x="${x0 + panelWidth / 2}" y="${y0 + 20}" text-anchor="middle" font-weight="bold" font-size="14">${escapeXml(panel.title)}</text>`);
    parts.push(`<text x="${x0 + panelWidth / 2}" y="${y0 + 37}" text-anchor="middle" fill="#555555">${escapeXml(panel.subtitle)}</text>`);
    parts.push(`<text x="${x0 + panelWidth / 2}" y="${y0 + 52}" text-anchor="middle" fill="#555555" font-size="11">${panel.better} is better</text>`);
    parts.push(`<line x1="${x0 + 15}" y1="${bottom}" x2="${x0 + panelWidth - 15}" y2="${bottom}" stroke="#888888"/>`);
    const barWidth = 40;
    const gap = (panelWidth - 30 - barWidth * runtimes.length) / (runtimes.length + 1);
    runtimes.forEach((runtime, i) => {
      const value = values[i]!;
      const x = x0 + 15 + gap + i * (barWidth + gap);
      if (Number.isFinite(value.median)) {
        const h = value.median * scale;
        parts.push(`<rect x="${x.toFixed(1)}" y="${(bottom - h).toFixed(1)}" width="${barWidth}" height="${h.toFixed(1)}" fill="${COLORS[runtime]}"/>`);
        if (value.max > value.min) {
          const cx = x + barWidth / 2;
          parts.push(
            `<line x1="${cx.toFixed(1)}" y1="${(bottom - value.min * scale).toFixed(1)}" x2="${cx.toFixed(1)}" y2="${(bottom - value.max * scale).toFixed(1)}" stroke="#999999" stroke-width="2"/>`,
          );
        }
        parts.push(
          `<text x="${(x + barWidth / 2).toFixed(1)}" y="${(bottom - Math.max(h, value.max * scale) - 5).toFixed(1)}" text-anchor="middle">${fmt(value.median, panel.digits)}</text>`,
        );
      } else {
        parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${bottom - 5}" text-anchor="middle" fill="#999999">n/a</text>`);
      }
      parts.push(`<text x="${(x + barWidth / 2).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${runtime}</text>`);
    });
    const ty = bottom - panel.target * scale;
    parts.push(`<line x1="${x0 + 15}" y1="${ty.toFixed(1)}" x2="${x0 + panelWidth - 15}" y2="${ty.toFixed(1)}" stroke="#cc0000" stroke-dasharray="5,4"/>`);
    parts.push(`<text x="${x0 + panelWidth - 15}" y="${(ty - 4).toFixed(1)}" text-anchor="end" fill="#cc0000" font-size="11">target ${panel.better === "lower" ? "≤" : "≥"} ${panel.target}</text>`);
  });
  parts.push(
    `<text x="${width / 2}" y="${height - 12}" text-anchor="middle" fill="#555555" font-size="11">median of rounds; grey whiskers: lowest–highest round; see BENCHMARKS.md</text>`,
  );
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

// ---------------------------------------------------------------------------
// Machine description and BENCHMARKS.md

function commandOutput(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", timeout: 20_000, cwd: ROOT }).trim();
  } catch {
    return "unknown";
  }
}

interface Machine {
  cpus: number;
  model: string;
  kernel: string;
  memory: string;
}

/** Call before pinning: `nproc` counts only the CPUs this process may run on. */
function machine(): Machine {
  let model = "unknown";
  try {
    model = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "unknown";
  } catch {
    // not Linux
  }
  const nproc = commandOutput("nproc", []);
  return {
    cpus: /^\d+$/.test(nproc) ? Number(nproc) : availableParallelism(),
    model,
    kernel: `${process.platform} ${release()}`,
    memory: `${fmt(totalmem() / 2 ** 30, 1)} GiB`,
  };
}

function runtimeVersions(): Record<RuntimeName, string> {
  const bin = (name: string): string => join(ROOT, "node_modules", ".bin", name);
  return {
    node: process.versions.node,
    deno: commandOutput(bin("deno"), ["--version"]).split("\n")[0]?.replace(/^deno\s+/, "") ?? "unknown",
    bun: commandOutput(bin("bun"), ["--version"]),
  };
}

/** The cases run again because they were unsteady, and those kept unsteady, as a paragraph and list. */
function repeatsMarkdown(results: Map<RuntimeName, Round[]>): string {
  const rounds = [...results.values()].flat();
  const repeats = rounds.flatMap((round) => round.repeats);
  const unsteady = rounds.flatMap((round) => round.unsteady);
  if (repeats.length === 0) return "No case was unsteady: none was run again.\n";
  const lines = [
    `${repeats.length} case run(s) were unsteady and run again (each unsteady contender's two runs, in server CPU per frame):`,
    "",
    ...repeats.map((line) => `- ${line}`),
  ];
  if (unsteady.length > 0) {
    lines.push("", `Kept although still unsteady after ${MAX_CASE_REPEATS} repeats:`, "", ...unsteady.map((line) => `- ${line}`));
  }
  return `${lines.join("\n")}\n`;
}

/** Each case's contenders in the order they run within a round, for the method section. */
function caseOrdersMarkdown(options: MatrixOptions): string {
  const rows = CASES.map((loadCase) => {
    const contenders = caseContenders(loadCase, options);
    const order = [...contenders, ...[...contenders].reverse()].map((contender) => contender.label).join(", ");
    return [loadCase.label, `${loadCase.connections} × ${loadCase.window}`, order];
  });
  return markdownTable(["case", "connections × in flight", "runs, in order"], rows, 99);
}

const RUNTIME_TITLES: Record<RuntimeName, string> = { node: "Node.js", deno: "Deno", bun: "Bun" };

/** The command line of every server the matrix ran, per runtime, as a shell block. */
function serverCommandsMarkdown(runtimes: readonly RuntimeName[], options: MatrixOptions): string {
  const show = (args: string[]): string => args.map((arg) => arg.split(ROOT).join("")).join(" ");
  const kinds = ["raw", "tlvkit", "handler", "handler-json"] as const;
  const lines: string[] = [];
  for (const runtime of runtimes) {
    lines.push(`# ${RUNTIME_TITLES[runtime]}${runtime === "node" ? " (after npm run build:npm and tsc -p bench/tsconfig.node-servers.json)" : ""}`);
    const commands = kinds.map((kind) => show(serverCommand(kind, runtime)));
    const width = Math.max(...commands.map((command) => command.length));
    kinds.forEach((kind, i) => lines.push(`${commands[i]!.padEnd(width)}   # ${SERVER_LABELS[kind]}`));
  }
  if (options.netty) lines.push("# Netty, on the JVM", show(serverCommand("netty", "node")));
  return ["```sh", ...lines, "```"].join("\n");
}

function benchmarksMarkdown(
  results: Map<RuntimeName, Round[]>,
  options: MatrixOptions,
  info: { started: Date; seconds: number; load: [number[], number[]]; pinned: boolean; nativeGenerator: boolean; machine: Machine },
): string {
  const m = info.machine;
  const versions = runtimeVersions();
  const ratios = ratioTable(results, true);
  const absolute = absoluteTable(results, options);
  const memory = memoryTable(results);
  const runtimes = [...results.keys()];
  const loads = (l: number[]): string => l.map((v) => v.toFixed(2)).join(" / ");
  return `# Benchmarks

tlvkit's goal is to cost almost nothing on top of the runtime's own socket API.
These figures compare tlvkit servers with a raw, unframed echo server written
directly on each runtime's socket API (\`bench/raw-echo/node.ts\` on
\`node:net\`, \`deno.ts\` on \`Deno.listen\`, \`bun.ts\` on \`Bun.listen\`): the
ceiling tlvkit is measured against. The tlvkit servers are an application's,
with an ordinary handler (\`bench/handler-echo.ts\`: the *handler echo*,
\`server.fallback((r) => r.reply(r.body))\`, and the *JSON handler*, a JSON
request/response service), and tlvkit's bundled server, \`tlvkit serve\`
(echo and HELLO).${options.netty ? `
The 64 B echo also runs a Netty 4.1 TLV echo (\`bench/netty-echo/TlvEcho.java\`:
\`LengthFieldBasedFrameDecoder\`, one event loop, each frame written back and
flushed once per read; ${nettyVersion()}), the server people would
otherwise pick on the JVM.` : ""}

Generated by \`bench/bench-matrix.ts\` on ${info.started.toISOString().slice(0, 10)}
(${info.started.toISOString()}, ${fmt(info.seconds / 60, 1)} minutes).

![tlvkit's ratios and their targets, per runtime](docs/benchmarks.svg)

## Machine

| | |
| --- | --- |
| CPUs (\`nproc\`) | ${m.cpus} |
| CPU model | ${m.model} |
| kernel | ${m.kernel} |
| memory | ${m.memory} |
| Node.js | ${versions.node} |
| Deno | ${versions.deno} |
| Bun | ${versions.bun} |
| load generator | ${info.nativeGenerator ? "the native C generator (\`bench/native-load/loadgen.c\`: epoll, one thread, every reply byte checked), pinned to CPU 0" : `Node.js ${versions.node}, \`bench/bench.ts\` in the matrix's own process (no C compiler found)`} |
| pinning | ${info.pinned ? "servers on CPU 1 (\`taskset -c 1\`), load generator on CPU 0" : "none (no \`taskset\` or a single CPU): noisier figures"} |
| load average (1/5/15 min) at start / end | ${loads(info.load[0])} — ${loads(info.load[1])} |

## Commands

\`\`\`sh
npm run bench:matrix      # node --import tsx bench/bench-matrix.ts  (this file and docs/benchmarks.svg)
node --import tsx bench/bench-matrix.ts --rounds ${options.rounds} --runtimes ${runtimes.join(",")} --duration ${options.duration} --warmup ${options.warmup} --idle ${options.idle}
npm run bench:quick       # one short round, prints the ratios, writes nothing

# one case at a time (server started, pinned, and measured by the generator):
node --import tsx bench/bench.ts --server handler --runtime deno --size 64 --connections 16 --window 16
node --import tsx bench/bench.ts --server raw --runtime deno --size 4096 --connections 16 --window 4
node --import tsx bench/bench.ts --server tlvkit --runtime bun --mode hello-styled
node --import tsx bench/bench.ts --server handler-json --runtime node --mode json${options.netty ? `\nnode --import tsx bench/bench.ts --server netty --size 64 --warmup ${NETTY_WARMUP}` : ""}
node --import tsx bench/bench.ts --server tlvkit --runtime node --idle 1000
\`\`\`

The servers, each started on a free port${info.pinned ? " under \`taskset -c 1\`" : ""}. On Node.js every server runs as
compiled JavaScript, as npm users run it: tlvkit is the package that \`npm run
build:npm\` builds into \`dist/npm/\`, and the benchmark servers that are not
part of it are compiled by the same tsc against it (\`bench/node-build.ts\`),
once at the start. Deno and Bun run the TypeScript sources directly.

${serverCommandsMarkdown(runtimes, options)}

Each round, for each runtime, first measures ${options.idle} idle sessions on a fresh
raw echo and a fresh \`tlvkit serve\` (fresh, so the baseline has carried no
load), then runs three load cases, each on fresh servers (a server's history
once slowed Node's raw echo 3–4×). Within a case every contender runs twice,
in mirrored order, so that a machine that drifts during a case weighs on all
alike, and each figure is the better of its two runs (lower cost, higher
throughput; noise only ever adds cost, so the better run is the nearer
estimate of the server's own):

${caseOrdersMarkdown(options)}

When a contender's two runs of a case differ by more than ${Math.round((UNSTEADY_ABOVE - 1) * 100)} % in server CPU per
frame${options.netty ? " (Netty's excepted: its first run may still be warming its JIT)" : ""}, the machine changed pace between them (see *How to
read these*), and the case is run again on fresh servers, at most ${MAX_CASE_REPEATS} more
times; the last attempt is kept.${options.netty ? ` Netty gets at least ${NETTY_WARMUP} s of warm-up (its JIT).` : ""} ${options.warmup} s of warm-up, then ${options.duration} s
measured per run. ${options.rounds} round(s) per runtime.

## Ratios

${markdownTable(ratios.header, ratios.rows)}

Each ratio is computed within a round, from runs made next to each other in
one case (HELLO and JSON against the handler echo of the *64 B messages* case;
idle tlvkit against idle raw of the same round), and the median over the
rounds is shown with the lowest and highest round in parentheses. ✓ / ✗: the
median against the target.

${repeatsMarkdown(results)}
## Absolute figures (medians)

${markdownTable(absolute.header, absolute.rows, 3)}

## Memory

${markdownTable(memory.header, memory.rows, 2)}

## How to read these

- **Server CPU per frame** is the server process's user + system CPU time
  (\`/proc/PID/stat\`) over the measured window divided by the frames answered
  in it: what a frame costs the server, independent of how fast the load
  generator is. Kernel ticks are ${fmt(1000 / clockTicksPerSecond(), 0)} ms, so a ${options.duration} s window at full load
  holds hundreds of ticks; windows of about a second (\`--quick\`) are coarse.
  tlvkit ÷ raw is the framing, routing, ordering and buffering overhead on top
  of the runtime's socket API.
- **Handler echo and \`tlvkit serve\`** both echo every frame through a
  handler. The handler echo is what an application writes, with the default
  options (each request's body is the handler's to keep); \`tlvkit serve\`'s
  bundled app routes by id and sets \`borrowBodies\` (its handlers copy what
  they reply and keep nothing). The handler echo's rows carry the targets; the
  bundled echo's are for comparison.
- **MB/s** counts wire bytes (header + body) per direction, 10^6 bytes per
  second. It measures the whole loop (generator and server), so compare the
  *server CPU* and *generator CPU* columns: a server below 100 % of its core
  while the generator is near 100 % means the generator set the pace, and
  MB/s ratios then understate the server's difference (the CPU-per-frame
  figures still show it).
- **HELLO, HELLO indented and JSON ÷ handler echo** compare tlvkit with
  itself, at about 64 B of request body: a HELLO (answered by \`tlvkit serve\`)
  parses a JSON request, builds the reply object and encodes it as UTF-8;
  *indented* sends the request as jsoncpp's \`toStyledString\` writes it (keys
  sorted, three-space indent, newlines). The JSON handler
  (\`bench/handler-echo.ts --app json\`) parses each body, adds \`"ok": true\`
  and encodes the object again. All on top of the echo's work.
- **Idle sessions**: the server's RSS (\`VmRSS\`) with ${options.idle} sessions open, each
  having exchanged one 16-byte frame, minus RSS before they were opened,
  divided by their number, on \`tlvkit serve\` and on the raw echo. Garbage-collected
  heaps grow in steps, so this is approximate, and their ratio more so;
  "after closing" shows how much is given back right away. \`peak RSS\` is the highest \`VmHWM\` over a round's load cases
  (start-up included).
- **Latency** (p50/p99) is per frame round trip with the window's frames
  pipelined, so it includes queueing behind up to window − 1 other frames.
- The machine is shared with whatever else runs: compare ratios (the runs of
  each ran back to back on the same machine) rather than absolute figures across
  machines, and rerun when the spread of a ratio is wide. The machine these
  figures come from has phases in which the same server costs two to four
  times more CPU per frame (raw and tlvkit alike; seen most at 4 KiB on Node,
  where a raw echo went from 4.5 to 15–20 µs per frame): a ratio from such a
  round compares two slowed servers and says little. Its absolute figures
  show it.
`;
}

// ---------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  let options: MatrixOptions;
  try {
    options = parseOptions();
  } catch (error) {
    console.error(`bench-matrix: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }
  const verbose = !options.quick || process.stderr.isTTY === true;
  const log = (line: string): void => {
    if (verbose) process.stderr.write(`${line}\n`);
  };
  const host = machine();
  if (options.netty) {
    const netty = nettyEcho(ROOT);
    if (netty.command === undefined) {
      console.error(`bench-matrix: no Netty figures: ${netty.reason}`);
      options.netty = false;
    }
  }
  if (options.runtimes.includes("node")) {
    // Once, before any server starts: every Node server runs compiled (see node-build.ts).
    log("bench-matrix: building the Node servers (npm run build:npm, tsc -p bench/tsconfig.node-servers.json)");
    try {
      buildNodeServers(ROOT);
    } catch (error) {
      console.error(`bench-matrix: ${error instanceof Error ? error.message : String(error)}`);
      return 1;
    }
  }
  const pinned = canPin() && pinSelf(0);
  if (!pinned) log("bench-matrix: not pinning CPUs (no taskset, a single CPU, or taskset failed): expect noisier figures");
  const started = new Date();
  const startedAt = performance.now();
  const loadStart = loadavg();
  const results = new Map<RuntimeName, Round[]>();
  const failures: Failure[] = [];
  for (const runtime of options.runtimes) {
    const rounds: Round[] = [];
    results.set(runtime, rounds);
    for (let round = 1; round <= options.rounds; round++) {
      log(`${runtime}: round ${round}/${options.rounds}`);
      rounds.push(await runRound(runtime, round, options, log, failures));
    }
  }
  const seconds = (performance.now() - startedAt) / 1000;
  const loadEnd = loadavg();

  const ratios = ratioTable(results, !options.quick);
  console.log(
    `tlvkit's ratios (${options.rounds} round${options.rounds === 1 ? "" : "s"}, ${options.duration} s runs, ` +
      `${fmt(seconds, 0)} s total; load average ${loadStart[0]?.toFixed(2)} → ${loadEnd[0]?.toFixed(2)})`,
  );
  console.log(textTable(ratios.header, ratios.rows));
  const repeated = [...results.values()].flat().reduce((sum, round) => sum + round.repeats.length, 0);
  if (repeated > 0) console.log(`${repeated} unsteady case run(s) repeated (listed above and in BENCHMARKS.md)`);
  if (!options.quick) {
    const absolute = absoluteTable(results, options);
    const memory = memoryTable(results);
    console.log(`\nAbsolute figures (medians)\n${textTable(absolute.header, absolute.rows)}`);
    console.log(`\nMemory (medians)\n${textTable(memory.header, memory.rows)}`);
  }
  if (options.write) {
    mkdirSync(join(ROOT, "docs"), { recursive: true });
    writeFileSync(join(ROOT, "docs", "benchmarks.svg"), svgChart(results));
    writeFileSync(
      join(ROOT, "BENCHMARKS.md"),
      benchmarksMarkdown(results, options, { started, seconds, load: [loadStart, loadEnd], pinned, nativeGenerator: nativeGenerator(ROOT).path !== undefined, machine: host }),
    );
    console.log("\nwrote BENCHMARKS.md and docs/benchmarks.svg");
  }
  if (failures.length > 0) {
    console.error(`\nbench-matrix: replies failed verification in ${failures.length} run(s):`);
    for (const failure of failures) console.error(`  ${failure.where}: ${failure.messages.join("; ")}`);
    return 1;
  }
  return 0;
}

const stopOnSignal = (): void => {
  void stopAllServers().finally(() => process.exit(130));
};
process.on("SIGINT", stopOnSignal);
process.on("SIGTERM", stopOnSignal);
process.on("exit", killAllServersNow);

let code = 1;
try {
  code = await main();
} catch (error) {
  console.error(`bench-matrix: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
} finally {
  await stopAllServers();
}
process.exit(code);
