/**
 * Interleaved A/B of server commands: the way to tell a few per cent apart on
 * a machine whose speed drifts by more than that between minutes. Each round
 * starts every server fresh, pinned to CPU 1, and loads it with the native
 * generator on CPU 0 (the same load as `bench.ts`); the order flips every
 * round (A B C, C B A, ...). Reported: each run's server CPU per frame, and
 * for every server after the first, the median and range of its per-round
 * ratio to the first (a ratio within a round is immune to the drift that
 * medians of whole runs are not).
 *
 * ```sh
 * node --import tsx bench/bench-ab.ts --rounds 8 --size 4096 --window 4 \
 *   --server "raw=./node_modules/.bin/bun bench/raw-echo/bun.ts --port 0 --binary-type arraybuffer" \
 *   --server "views=./node_modules/.bin/bun bench/raw-echo/bun.ts --port 0 --binary-type arraybuffer --views"
 * ```
 *
 * `--server LABEL=COMMAND` (two or more): a command run from the repository
 * root, split on spaces (no shell), that prints `listening on HOST:PORT` on
 * standard output and stops on SIGTERM. Options: `--rounds 8`, `--size 64`,
 * `--connections 16`, `--window 16`, `--duration 2`, `--warmup 1` (seconds),
 * `--mode echo|hello|hello-styled|json` (see `LoadMode` in `bench.ts`), `--expect raw|tlvkit` (what replies look like: the
 * request bytes, or tlvkit's answers; an echo is both). Linux; without the
 * native generator (no C compiler) it says so and exits 1. Exits 1 too when
 * any reply failed verification.
 *
 * @module
 */

import process from "node:process";
import { scriptArgs } from "../scripts/_script_args.ts";
import { canPin, LOAD_MODES, type LoadMode, type LoadOptions, type ReplyShape, ROOT, startServerCommand, stopAllServers } from "./bench.ts";
import { nativeGenerator, runNativeLoad } from "./native-load.ts";

const USAGE = "Usage: bench-ab.ts --server LABEL=COMMAND --server LABEL=COMMAND [...] [--rounds 8] [--size 64] " +
  "[--connections 16] [--window 16] [--duration 2] [--warmup 1] [--mode echo|hello|hello-styled|json] [--expect raw|tlvkit]";

interface Contender {
  label: string;
  args: string[];
}

function positive(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} must be a number from ${min} to ${max}, got "${text}"`);
  return value;
}

function parseServer(text: string): Contender {
  const at = text.indexOf("=");
  const label = text.slice(0, at).trim();
  const args = text.slice(at + 1).trim().split(/\s+/).filter((arg) => arg !== "");
  if (at <= 0 || label === "" || args.length === 0) throw new Error(`--server must be LABEL=COMMAND, got "${text}"`);
  return { label, args };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const values = scriptArgs("bench-ab", USAGE, {
  server: { type: "string", multiple: true },
  rounds: { type: "string", default: "8" },
  size: { type: "string", default: "64" },
  connections: { type: "string", default: "16" },
  window: { type: "string", default: "16" },
  duration: { type: "string", default: "2" },
  warmup: { type: "string", default: "1" },
  mode: { type: "string", default: "echo" },
  expect: { type: "string", default: "raw" },
}, (v) => {
  if ((v.server ?? []).length < 2) throw new Error("give at least two --server LABEL=COMMAND");
  for (const text of v.server ?? []) parseServer(text);
  const labels = (v.server ?? []).map((text) => parseServer(text).label);
  if (new Set(labels).size !== labels.length) throw new Error(`--server labels must differ, got ${labels.join(", ")}`);
  positive("rounds", v.rounds, 1, 1000);
  positive("size", v.size, 0, 65535);
  positive("connections", v.connections, 1, 10_000);
  positive("window", v.window, 1, 1024);
  positive("duration", v.duration, 0.2, 600);
  positive("warmup", v.warmup, 0, 600);
  if (!LOAD_MODES.includes(v.mode as LoadMode)) throw new Error(`--mode must be one of ${LOAD_MODES.join(", ")}, got "${v.mode}"`);
  if (v.expect !== "raw" && v.expect !== "tlvkit") throw new Error(`--expect must be raw or tlvkit, got "${v.expect}"`);
});

const contenders = values.server!.map(parseServer);
const rounds = Number(values.rounds);
const generator = nativeGenerator(ROOT);
if (generator.path === undefined) {
  console.error(`bench-ab: needs the native load generator: ${generator.reason}`);
  process.exit(1);
}
const pin = canPin();
if (!pin) console.error("bench-ab: cannot pin (no taskset or fewer than 2 CPUs): figures are noisier");

const stopOnSignal = (): void => {
  void stopAllServers().finally(() => process.exit(130));
};
process.on("SIGINT", stopOnSignal);
process.on("SIGTERM", stopOnSignal);

const cost = new Map<string, number[]>(contenders.map((c) => [c.label, []]));
const mbps = new Map<string, number[]>(contenders.map((c) => [c.label, []]));
let errors = 0;
const width = Math.max(...contenders.map((c) => c.label.length));
console.log(
  `bench-ab: ${rounds} round(s) of ${contenders.map((c) => c.label).join(", ")}; ${values.mode} ${values.size} B, ` +
    `${values.connections}×${values.window}, ${values.duration} s after ${values.warmup} s warm-up`,
);
try {
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? contenders : [...contenders].reverse();
    const line: string[] = [];
    for (const contender of order) {
      const server = await startServerCommand(contender.args, contender.label, pin ? 1 : undefined);
      try {
        const options: LoadOptions = {
          host: server.host,
          port: server.port,
          connections: Number(values.connections),
          window: Number(values.window),
          size: Number(values.size),
          duration: Number(values.duration),
          warmup: Number(values.warmup),
          mode: values.mode as LoadMode,
          expect: values.expect as ReplyShape,
          serverPid: server.pid,
          progress: false,
        };
        const result = await runNativeLoad(ROOT, generator.path, options, pin ? 0 : undefined);
        errors += result.errors;
        const us = result.server?.cpuUsPerFrame;
        if (us === undefined) throw new Error(`no CPU figure for ${contender.label} (not Linux?)`);
        cost.get(contender.label)!.push(us);
        mbps.get(contender.label)!.push(result.mbpsIn);
        line.push(`${contender.label} ${us.toFixed(3)}${result.errors > 0 ? ` (${result.errors} errors)` : ""}`);
      } finally {
        await server.stop();
      }
    }
    console.log(`round ${round + 1}: ${line.join("   ")} µs/frame`);
  }
} catch (error) {
  console.error(`bench-ab: ${error instanceof Error ? error.message : String(error)}`);
  await stopAllServers();
  process.exit(1);
}

const base = contenders[0]!.label;
console.log(`\n${"server".padEnd(width)}   µs/frame (median)   MB/s (median)   ÷ ${base}, per round: median (min–max)`);
for (const { label } of contenders) {
  const us = cost.get(label)!;
  const ratios = us.map((value, i) => value / cost.get(base)![i]!);
  const versus = label === base ? "" : `${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`;
  console.log(`${label.padEnd(width)}   ${median(us).toFixed(3).padStart(17)}   ${median(mbps.get(label)!).toFixed(1).padStart(13)}   ${versus}`);
}
console.log(`verification errors: ${errors}`);
process.exit(errors > 0 ? 1 : 0);
