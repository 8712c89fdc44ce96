/**
 * tlvkit against the ceiling, on every runtime: for Node.js, Deno and Bun it
 * runs tlvkit's `serve` and the raw unframed echo of `bench/raw-echo/`
 * side by side, interleaved (raw, tlvkit, tlvkit, raw for each case within a
 * round, each figure the better of its two runs; fresh servers for every case),
 * over several rounds, and reports medians:
 *
 * | case | connections × in flight | figure |
 * | --- | --- | --- |
 * | 64 B echo | 16 × 16 | server CPU per frame, tlvkit ÷ raw (target ≤ 1.5), and ÷ Netty (target < 1) |
 * | 4 KiB echo | 16 × 4 | MB/s, tlvkit ÷ raw (target ≥ 0.9) |
 * | HELLO | 16 × 16 | tlvkit's server CPU per HELLO ÷ per 64 B echo (target ≤ 3) |
 * | 1,000 idle sessions | — | server RSS growth per session, KiB (aim < 64) |
 *
 * The 64 B case also runs the Netty 4.1 TLV echo of `bench/netty-echo/`
 * (raw, tlvkit, Netty, Netty, tlvkit, raw; at least 8 s of warm-up for the
 * JIT) when a JDK and Netty's jars are there (`bench/netty-echo.ts`); without
 * them the matrix says why in one line and leaves the Netty row out.
 *
 * On Node.js every server runs compiled, as npm users run it: tlvkit from the
 * package `npm run build:npm` builds into `dist/npm/`, the raw echo compiled
 * against it, built once at the start (`bench/node-build.ts`). Deno and Bun
 * run the TypeScript. Servers run pinned to CPU 1 (`taskset -c 1`), the load
 * generator on CPU 0: the native generator when there is a C compiler, else
 * `bench/bench.ts` in this process, on Node. Without `taskset` or a second
 * CPU nothing is pinned.
 *
 * ```sh
 * npm run bench:quick     # 1 short round per runtime, < 60 s: prints the ratios, writes nothing
 * npm run bench:matrix    # 3 rounds (about 6 minutes): tables on stdout, BENCHMARKS.md, docs/benchmarks.svg
 * node --import tsx bench/bench-matrix.ts --rounds 5 --runtimes node,bun --duration 10
 * ```
 *
 * Options: `--rounds 3`, `--runtimes node,deno,bun`, `--duration 5` and
 * `--warmup 1` (seconds per load run), `--idle 1000` (idle sessions),
 * `--quick` (1 round of 1 s runs, ratios only, no files), `--no-write` (full
 * tables on stdout, no files: for reruns of one runtime), `--no-netty`.
 *
 * Ratios are computed per round (each from the raw and tlvkit runs next to each
 * other) and the median of the rounds is reported, with the lowest and highest
 * round beside it: a wide spread means the machine was busy, so rerun.
 * A case whose raw or tlvkit runs differ by more than 15 % in server CPU per
 * frame caught the machine changing pace, and is run again (at most twice;
 * not with `--quick`); BENCHMARKS.md lists those repeats.
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

const USAGE = "Usage: bench-matrix.ts [--quick] [--rounds 3] [--runtimes node,deno,bun] [--duration 5] [--warmup 1] [--idle 1000] [--no-netty] [--no-write]";

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
    duration: num("duration", values.duration, quick ? 1 : 5, 0.2, 600),
    warmup: num("warmup", values.warmup, quick ? 0.25 : 1, 0, 60),
    idle: Math.round(num("idle", values.idle, 1000, 1, 10_000)),
    settleMs: quick ? 200 : 500,
    netty: !quick && !values["no-netty"],
  };
}

// ---------------------------------------------------------------------------
// Running

interface LoadCase {
  readonly key: "echo64" | "echo4k" | "hello";
  readonly label: string;
  readonly mode: LoadMode;
  readonly size: number;
  readonly connections: number;
  readonly window: number;
  /** Servers it runs against, in order. */
  readonly servers: readonly ServerKind[];
}

const CASES: readonly LoadCase[] = [
  { key: "echo64", label: "64 B echo", mode: "echo", size: 64, connections: 16, window: 16, servers: ["raw", "tlvkit"] },
  { key: "echo4k", label: "4 KiB echo", mode: "echo", size: 4096, connections: 16, window: 4, servers: ["raw", "tlvkit"] },
  { key: "hello", label: "HELLO", mode: "hello", size: 64, connections: 16, window: 16, servers: ["tlvkit"] },
];

type CaseKey = LoadCase["key"];

/** Seconds of load a Netty server gets before it is measured, at least: time for the JVM's JIT. */
const NETTY_WARMUP = 8;

/**
 * A server whose two runs in one case differ by more than this factor in CPU
 * per frame ran in two different paces of the machine (see the next comment).
 */
const UNSTEADY_ABOVE = 1.15;
/** How often a case is run again, at most, when it was unsteady. */
const MAX_CASE_REPEATS = 2;

/**
 * Why a case's runs cannot be compared, if they cannot: the raw or the tlvkit
 * server's two runs differ by more than {@link UNSTEADY_ABOVE} in server CPU
 * per frame. The machine these figures come from switches between paces for
 * a minute or so at a time (the same raw Bun echo at 3.6 and at 5.9 µs per
 * 4 KiB frame, Deno's at 3.4 and 4.6): a round whose raw runs caught one pace
 * and whose tlvkit runs the other gives a ratio of the machine, not of the
 * servers (Bun 4 KiB rounds of 0.61 and 1.12 in one matrix). The check is the
 * same for both servers, whichever way the ratio would move. Netty is left
 * out: its first run may still be warming its JIT.
 */
function unsteadyPair(runs: Partial<Record<ServerKind, LoadResult[]>>): string | undefined {
  const reasons: string[] = [];
  for (const kind of ["raw", "tlvkit"] as const) {
    const list = runs[kind];
    if (list === undefined || list.length < 2) continue;
    const costs = list.map((run) => run.server?.cpuUsPerFrame ?? NaN);
    const low = Math.min(...costs);
    const high = Math.max(...costs);
    if (high / low > UNSTEADY_ABOVE) reasons.push(`${kind} ${costs.map((cost) => fmt(cost, 2)).join(" and ")} µs/frame`);
  }
  return reasons.length === 0 ? undefined : reasons.join(", ");
}

/** The servers a case runs against in this matrix: the 64 B echo also against Netty when asked. */
function caseServers(loadCase: LoadCase, options: MatrixOptions): readonly ServerKind[] {
  return options.netty && loadCase.key === "echo64" ? [...loadCase.servers, "netty"] : loadCase.servers;
}

/** One round on one runtime. */
interface Round {
  load: Record<CaseKey, Partial<Record<ServerKind, LoadResult>>>;
  idle: Partial<Record<ServerKind, IdleResult>>;
  /** Highest VmHWM of each kind of server over the round (fresh servers per case), KiB. */
  peakRssKiB: Partial<Record<ServerKind, number>>;
  /** Cases run again because the machine changed pace within them (see {@link unsteadyPair}). */
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
  const result: Round = { load: { echo64: {}, echo4k: {}, hello: {} }, idle: {}, peakRssKiB: {}, repeats: [], unsteady: [] };
  const pin = canPin() ? 1 : undefined;
  const native = nativeGenerator(ROOT).path;
  let servers: Partial<Record<ServerKind, ServerProcess>> = {};
  const stopAll = (): Promise<unknown> => Promise.all(Object.values(servers).map((server) => server.stop()));
  const startServers = async (kinds: readonly ServerKind[] = ["raw", "tlvkit"]): Promise<void> => {
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
    const where = (kind: ServerKind, what: string): string => `${runtime} round ${round} ${what} ${kind}`;
    // Every case on fresh servers: a server's history (Node's raw echo once ran
    // its 4 KiB case at 17-21 µs/frame after the idle and 64 B cases, against
    // 5-7 fresh) must not weigh on one side. Idle sessions first.
    await startServers();
    for (const kind of ["raw", "tlvkit"] as const) {
      const server = servers[kind]!;
      const idle = await runIdle({ host: server.host, port: server.port, count: options.idle, serverPid: server.pid, settleMs: options.settleMs });
      result.idle[kind] = idle;
      if (idle.errors > 0) failures.push({ where: where(kind, "idle"), messages: idle.errorSamples });
      log(`  ${where(kind, `${options.idle} idle`)}: ${fmt(idle.kibPerSession)} KiB/session (RSS ${fmt(idle.rssBeforeKiB / 1024)} → ${fmt(idle.rssAfterKiB / 1024)} MiB)`);
    }
    for (const loadCase of CASES) {
      const kinds = caseServers(loadCase, options);
      for (let attempt = 0;; attempt++) {
        await stopServers();
        await startServers(kinds);
        // A, B, B, A: a machine that drifts (or flips into a slower state) during
        // a case weighs on both servers alike, and each figure is the better of two runs.
        const order = kinds.length > 1 ? [...kinds, ...[...kinds].reverse()] : kinds;
        const runs: Partial<Record<ServerKind, LoadResult[]>> = {};
        for (const kind of order) {
          const server = servers[kind]!;
          const loadOptions: LoadOptions = {
            host: server.host,
            port: server.port,
            connections: loadCase.connections,
            window: loadCase.window,
            size: loadCase.size,
            duration: options.duration,
            warmup: kind === "netty" ? Math.max(options.warmup, NETTY_WARMUP) : options.warmup,
            mode: loadCase.mode,
            expect: replyShape(kind),
            serverPid: server.pid,
            progress: false,
          };
          const load = native !== undefined
            ? await runNativeLoad(ROOT, native, loadOptions, pin === undefined ? undefined : 0)
            : await runLoad(loadOptions);
          (runs[kind] ??= []).push(load);
          if (load.errors > 0) failures.push({ where: where(kind, loadCase.label), messages: load.errorSamples });
          log(
            `  ${where(kind, loadCase.label)}: ${fmt(load.framesPerSecond, 0)} frames/s, ${fmt(load.mbpsIn, 1)} MB/s, ` +
              `server ${fmt(load.server?.cpuUsPerFrame, 2)} µs/frame at ${fmt((load.server?.cpuShare ?? NaN) * 100, 0)} %, ` +
              `generator ${fmt(load.generatorCpuShare * 100, 0)} %, errors ${load.errors}`,
          );
        }
        const unsteady = options.quick ? undefined : unsteadyPair(runs);
        if (unsteady !== undefined) {
          const repeat = attempt < MAX_CASE_REPEATS;
          const which = `${runtime} round ${round} ${loadCase.label}`;
          log(`  ${which}: ${repeat ? "unsteady" : "still unsteady"} (${unsteady}); ${repeat ? "repeating the case" : "kept"}`);
          (repeat ? result.repeats : result.unsteady).push(`${which}: ${unsteady}`);
          if (repeat) continue;
        }
        for (const [kind, list] of Object.entries(runs) as Array<[ServerKind, LoadResult[]]>) {
          result.load[loadCase.key][kind] = list.reduce(bestOf);
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
  cpu64: Spread;
  /** tlvkit ÷ Netty, 64 B server CPU/frame (NaN without Netty runs). */
  cpu64Netty: Spread;
  mbps4k: Spread;
  hello: Spread;
  idleTlvkit: Spread;
  idleRaw: Spread;
}

function ratiosOf(rounds: Round[]): Ratios {
  const per = (f: (round: Round) => number | undefined): Spread => spread(rounds.map((round) => f(round) ?? NaN));
  return {
    cpu64: per((r) => {
      const raw = r.load.echo64.raw?.server?.cpuUsPerFrame;
      const tlv = r.load.echo64.tlvkit?.server?.cpuUsPerFrame;
      return raw !== undefined && tlv !== undefined ? tlv / raw : undefined;
    }),
    cpu64Netty: per((r) => {
      const netty = r.load.echo64.netty?.server?.cpuUsPerFrame;
      const tlv = r.load.echo64.tlvkit?.server?.cpuUsPerFrame;
      return netty !== undefined && tlv !== undefined ? tlv / netty : undefined;
    }),
    mbps4k: per((r) => {
      const raw = r.load.echo4k.raw?.mbpsIn;
      const tlv = r.load.echo4k.tlvkit?.mbpsIn;
      return raw !== undefined && tlv !== undefined ? tlv / raw : undefined;
    }),
    hello: per((r) => {
      const echo = r.load.echo64.tlvkit?.server?.cpuUsPerFrame;
      const hello = r.load.hello.tlvkit?.server?.cpuUsPerFrame;
      return echo !== undefined && hello !== undefined ? hello / echo : undefined;
    }),
    idleTlvkit: per((r) => r.idle.tlvkit?.kibPerSession),
    idleRaw: per((r) => r.idle.raw?.kibPerSession),
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
  { label: "64 B echo: server CPU/frame, tlvkit ÷ raw", target: "≤ 1.5", value: (r) => r.cpu64, pass: (v) => v <= 1.5, digits: 2 },
  { label: "64 B echo: server CPU/frame, tlvkit ÷ Netty", target: "< 1", value: (r) => r.cpu64Netty, pass: (v) => v < 1, digits: 2, optional: true },
  { label: "4 KiB echo: MB/s, tlvkit ÷ raw", target: "≥ 0.9", value: (r) => r.mbps4k, pass: (v) => v >= 0.9, digits: 2 },
  { label: "HELLO ÷ 64 B echo: tlvkit server CPU/frame", target: "≤ 3", value: (r) => r.hello, pass: (v) => v <= 3, digits: 2 },
  { label: "idle session: tlvkit server RSS, KiB", target: "< 64", value: (r) => r.idleTlvkit, pass: (v) => v < 64, digits: 1 },
  { label: "idle session: raw server RSS, KiB (reference)", target: "", value: (r) => r.idleRaw, pass: () => true, digits: 1 },
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

function absoluteTable(results: Map<RuntimeName, Round[]>): { header: string[]; rows: string[][] } {
  const rows: string[][] = [];
  for (const [runtime, rounds] of results) {
    for (const loadCase of CASES) {
      const kinds = (["raw", "tlvkit", "netty"] as const).filter((kind) => rounds.some((round) => round.load[loadCase.key][kind] !== undefined));
      for (const kind of kinds) {
        const runs = rounds.map((round) => round.load[loadCase.key][kind]).filter((run): run is LoadResult => run !== undefined);
        const m = (f: (run: LoadResult) => number | undefined): number => median(runs.map((run) => f(run) ?? NaN));
        rows.push([
          runtime,
          `${loadCase.label} (${loadCase.connections}×${loadCase.window})`,
          kind,
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

function memoryTable(results: Map<RuntimeName, Round[]>): { header: string[]; rows: string[][] } {
  const rows: string[][] = [];
  for (const [runtime, rounds] of results) {
    for (const kind of ["raw", "tlvkit"] as const) {
      const idles = rounds.map((round) => round.idle[kind]).filter((idle): idle is IdleResult => idle !== undefined);
      const m = (f: (idle: IdleResult) => number): number => median(idles.map(f));
      rows.push([
        runtime,
        kind,
        fmt(m((i) => i.rssBeforeKiB) / 1024, 1),
        fmt(m((i) => i.rssAfterKiB) / 1024, 1),
        fmt(m((i) => i.kibPerSession), 1),
        fmt(m((i) => i.rssClosedKiB) / 1024, 1),
        fmt(median(rounds.map((round) => round.peakRssKiB[kind] ?? NaN)) / 1024, 1),
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
    { title: "64 B echo", subtitle: "server CPU/frame, tlvkit ÷ raw", target: 1.5, better: "lower", value: (r) => r.cpu64, digits: 2 },
    { title: "4 KiB echo", subtitle: "MB/s, tlvkit ÷ raw", target: 0.9, better: "higher", value: (r) => r.mbps4k, digits: 2 },
    { title: "HELLO", subtitle: "CPU/frame ÷ 64 B echo", target: 3, better: "lower", value: (r) => r.hello, digits: 2 },
    { title: "Idle session", subtitle: "tlvkit server RSS, KiB", target: 64, better: "lower", value: (r) => r.idleTlvkit, digits: 1 },
  ];
  const panelWidth = 230;
  const width = panelWidth * panels.length + 20;
  const height = 300;
  const top = 62;
  const bottom = 250;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
  ];
  panels.forEach((panel, p) => {
    const x0 = 10 + p * panelWidth;
    const values = runtimes.map((runtime) => panel.value(ratios.get(runtime)!));
    const highest = Math.max(panel.target, ...values.map((v) => (Number.isFinite(v.max) ? v.max : 0)));
    const scale = (bottom - top) / (highest * 1.15 || 1);
    parts.push(`<text x="${x0 + panelWidth / 2}" y="20" text-anchor="middle" font-weight="bold" font-size="14">${escapeXml(panel.title)}</text>`);
    parts.push(`<text x="${x0 + panelWidth / 2}" y="37" text-anchor="middle" fill="#555555">${escapeXml(panel.subtitle)}</text>`);
    parts.push(`<text x="${x0 + panelWidth / 2}" y="52" text-anchor="middle" fill="#555555" font-size="11">${panel.better} is better</text>`);
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
    `${repeats.length} case run(s) were unsteady and run again (the server's two runs, in CPU per frame):`,
    "",
    ...repeats.map((line) => `- ${line}`),
  ];
  if (unsteady.length > 0) {
    lines.push("", `Kept although still unsteady after ${MAX_CASE_REPEATS} repeats:`, "", ...unsteady.map((line) => `- ${line}`));
  }
  return `${lines.join("\n")}\n`;
}

function benchmarksMarkdown(
  results: Map<RuntimeName, Round[]>,
  options: MatrixOptions,
  info: { started: Date; seconds: number; load: [number[], number[]]; pinned: boolean; nativeGenerator: boolean; machine: Machine },
): string {
  const m = info.machine;
  const versions = runtimeVersions();
  const ratios = ratioTable(results, true);
  const absolute = absoluteTable(results);
  const memory = memoryTable(results);
  const runtimes = [...results.keys()];
  const loads = (l: number[]): string => l.map((v) => v.toFixed(2)).join(" / ");
  return `# Benchmarks

tlvkit's goal is to cost almost nothing on top of the runtime's own socket API.
These figures compare tlvkit's bundled server (\`src/cli.ts serve\`) with a raw,
unframed echo server written directly on each runtime's socket API
(\`bench/raw-echo/node.ts\` on \`node:net\`, \`deno.ts\` on \`Deno.listen\`,
\`bun.ts\` on \`Bun.listen\`): the ceiling tlvkit is measured against.${options.netty ? `
The 64 B echo also runs a Netty 4.1 TLV echo (\`bench/netty-echo/TlvEcho.java\`:
\`LengthFieldBasedFrameDecoder\`, one event loop, each frame written back and
flushed once per read; ${nettyVersion()}), the server people would
otherwise pick on the JVM.` : ""}

Generated by \`bench/bench-matrix.ts\` on ${info.started.toISOString().slice(0, 10)}
(${info.started.toISOString()}, ${fmt(info.seconds / 60, 1)} minutes).

![tlvkit ÷ raw, per runtime](docs/benchmarks.svg)

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
node --import tsx bench/bench.ts --server tlvkit --runtime deno --size 64 --connections 16 --window 16
node --import tsx bench/bench.ts --server raw --runtime deno --size 4096 --connections 16 --window 4
node --import tsx bench/bench.ts --server tlvkit --runtime bun --mode hello${options.netty ? `\nnode --import tsx bench/bench.ts --server netty --size 64 --warmup ${NETTY_WARMUP}` : ""}
node --import tsx bench/bench.ts --server tlvkit --runtime node --idle 1000
\`\`\`

Each round starts a fresh raw server and a fresh tlvkit server for the runtime,
measures ${options.idle} idle sessions on each (fresh servers, so the baseline
has carried no load), then runs every load case against raw and tlvkit in turn,
on a fresh pair of servers per case (a server's history once slowed Node's raw
echo 3–4×): raw, tlvkit, tlvkit, raw for each echo case — so a machine that
drifts during a case weighs on both alike, and each figure is the better of
its two runs (lower cost, higher throughput; noise only ever adds cost, so the
better run is the nearer estimate of the server's own) —
then HELLO on tlvkit. When the raw or the tlvkit server's two runs of a case
differ by more than ${Math.round((UNSTEADY_ABOVE - 1) * 100)} % in server CPU per frame, the machine changed pace
between them (see *How to read these*), and the case is run again on fresh servers, at
most ${MAX_CASE_REPEATS} more times; the last attempt is kept.${options.netty ? ` The 64 B case runs raw, tlvkit, Netty, Netty, tlvkit, raw; Netty gets at least ${NETTY_WARMUP} s of warm-up (its JIT).` : ""} ${options.warmup} s of warm-up, then ${options.duration} s measured per run. ${options.rounds} round(s) per runtime.

## Ratios

${markdownTable(ratios.header, ratios.rows)}

Each ratio is computed within a round, from the raw and tlvkit runs made next
to each other, and the median over the rounds is shown with the lowest and
highest round in parentheses. ✓ / ✗: the median against the target.

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
- **MB/s** counts wire bytes (header + body) per direction, 10^6 bytes per
  second. It measures the whole loop (generator and server), so compare the
  *server CPU* and *generator CPU* columns: a server below 100 % of its core
  while the generator is near 100 % means the generator set the pace, and
  MB/s ratios then understate the server's difference (the CPU-per-frame
  figures still show it).
- **HELLO ÷ echo** compares tlvkit with itself: a HELLO parses JSON, builds the
  reply object and encodes it as UTF-8, on top of the echo's work.
- **Idle sessions**: the server's RSS (\`VmRSS\`) with ${options.idle} sessions open, each
  having exchanged one 16-byte frame, minus RSS before they were opened,
  divided by their number. Garbage-collected heaps grow in steps, so this is
  approximate; "after closing" shows how much is given back right away.
  \`peak RSS\` is the highest \`VmHWM\` over a round's load cases (start-up included).
  On Node.js every server runs compiled (\`node dist/npm/src/cli.js serve\`, the
  package \`npm run build:npm\` builds; \`node dist/npm/bench/raw-echo/node.js\`),
  not through \`tsx\`, whose transform and loader change memory per session.
- **Latency** (p50/p99) is per frame round trip with the window's frames
  pipelined, so it includes queueing behind up to window − 1 other frames.
- The machine is shared with whatever else runs: compare ratios (each pair ran
  back to back on the same machine) rather than absolute figures across
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
    `tlvkit ÷ raw echo (${options.rounds} round${options.rounds === 1 ? "" : "s"}, ${options.duration} s runs, ` +
      `${fmt(seconds, 0)} s total; load average ${loadStart[0]?.toFixed(2)} → ${loadEnd[0]?.toFixed(2)})`,
  );
  console.log(textTable(ratios.header, ratios.rows));
  const repeated = [...results.values()].flat().reduce((sum, round) => sum + round.repeats.length, 0);
  if (repeated > 0) console.log(`${repeated} unsteady case run(s) repeated (listed above and in BENCHMARKS.md)`);
  if (!options.quick) {
    const absolute = absoluteTable(results);
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
