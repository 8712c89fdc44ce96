/**
 * What a single binary costs: for each binary in `dist/` (build them first with
 * `npm run build:bin`) and, for comparison, the source CLI on each runtime,
 * measures the size on disk, the time from exec to the `listening on` line of
 * `serve --port 0` (median of `--runs` starts, lowest and highest beside it),
 * and the peak memory of the idle server (`VmHWM` from `/proc/PID/status`,
 * read `--settle` ms after the ready line; median). Binaries run from an empty
 * temporary folder with no `node_modules` on the PATH, as in `test-bin.ts`.
 * Prints a Markdown table.
 *
 * ```sh
 * node --import tsx bench/bench-bin.ts [--runs 10] [--settle 500] [--no-source]
 * ```
 *
 * @module
 */

import { mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { RuntimeName } from "../mod.ts";
import { within } from "../tests/_async.ts";
import { runtimeCommand, start, type StartOptions, stopAll } from "../tests/_processes.ts";
import { BINARIES, binaryEnv } from "../scripts/_binaries.ts";
import { scriptArgs } from "../scripts/_script_args.ts";
import { readStatusKiB } from "./bench.ts";

const USAGE = "Usage: bench-bin.ts [--runs 10] [--settle 500] [--no-source]";

/** One thing to start: a binary, or the source CLI on a runtime. */
interface Subject {
  readonly label: string;
  readonly command: string[];
  readonly how: StartOptions;
  /** Bytes on disk, for binaries. */
  readonly size?: number;
}

interface Start {
  readonly readyMs: number;
  readonly peakKiB: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Start `serve --port 0` once: milliseconds to the ready line, then the idle peak RSS; then stop it with SIGTERM. */
async function startOnce(subject: Subject, settleMs: number): Promise<Start> {
  const started = performance.now();
  const child = start([...subject.command, "serve", "--port", "0"], subject.how);
  try {
    await child.waitFor(/^listening on /m, 30_000);
    const readyMs = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    const peakKiB = readStatusKiB(child.process.pid!, "VmHWM");
    if (peakKiB === undefined) throw new Error(`cannot read /proc/${child.process.pid}/status`);
    child.kill("SIGTERM");
    const { code } = await within(child.exited, 10_000, `${subject.label} to exit after SIGTERM`);
    if (code !== 0) throw new Error(`${subject.label} exited ${code} after SIGTERM: ${child.stderr.trim()}`);
    return { readyMs, peakKiB };
  } finally {
    await stopAll();
  }
}

function subjects(folder: string, withSource: boolean): Subject[] {
  const binaryHow: StartOptions = { cwd: folder, env: binaryEnv() };
  const list: Subject[] = [];
  for (const binary of BINARIES) {
    let size: number;
    try {
      size = statSync(binary.path).size;
    } catch {
      console.error(`bench-bin: no dist/${binary.name} (npm run build:bin): left out`);
      continue;
    }
    list.push({ label: `\`dist/${binary.name}\``, command: [binary.path], how: binaryHow, size });
  }
  if (withSource) {
    for (const runtime of ["node", "bun", "deno"] as RuntimeName[]) {
      const command = runtimeCommand(runtime, "src/cli.ts");
      list.push({ label: `\`${command.map((part) => part.replace(/.*node_modules\/\.bin\//, "")).join(" ")}\` (source)`, command, how: {} });
    }
  }
  return list;
}

async function main(): Promise<number> {
  const values = scriptArgs(
    "bench-bin",
    USAGE,
    { runs: { type: "string", default: "10" }, settle: { type: "string", default: "500" }, "no-source": { type: "boolean" } },
    (v) => {
      if (!/^[1-9]\d*$/.test(v.runs) || !/^\d+$/.test(v.settle)) throw new RangeError("--runs takes a positive integer, --settle whole milliseconds");
    },
  );
  const runs = Number(values.runs);
  const settleMs = Number(values.settle);
  const folder = mkdtempSync(join(tmpdir(), "tlvkit-bench-bin-"));
  const load = loadavg()[0]!.toFixed(2);
  const rows: string[] = [];
  try {
    for (const subject of subjects(folder, !values["no-source"])) {
      const starts: Start[] = [];
      for (let run = 0; run < runs; run++) starts.push(await startOnce(subject, settleMs));
      const ready = starts.map((s) => s.readyMs);
      const size = subject.size === undefined ? "—" : `${(subject.size / 2 ** 20).toFixed(1)} MiB`;
      const readyText = `${median(ready).toFixed(0)} ms (${Math.min(...ready).toFixed(0)}–${Math.max(...ready).toFixed(0)})`;
      const peak = `${(median(starts.map((s) => s.peakKiB)) / 1024).toFixed(1)} MiB`;
      rows.push(`| ${subject.label} | ${size} | ${readyText} | ${peak} |`);
      console.error(`bench-bin: ${subject.label} done`);
    }
  } finally {
    await stopAll();
    rmSync(folder, { recursive: true, force: true });
  }
  console.log(`${runs} starts each, idle peak read ${settleMs} ms after the ready line; load average ${load} at start\n`);
  console.log("| what | size on disk | exec → `listening on` (median, min–max) | peak RSS at idle (VmHWM, median) |");
  console.log("| --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
  return 0;
}

process.exitCode = await main();
