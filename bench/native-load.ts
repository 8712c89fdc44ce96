/**
 * The native echo load generator (`bench/native-load/loadgen.c`), compiled
 * on first use with the machine's C compiler into `.tlvkit-tmp/`, and run as a
 * child process pinned to CPU 0. A JavaScript generator saturates its own core
 * before a fast server does; this one loads the server the way an independent
 * native client would. The frames it sends and the replies it expects are
 * the plan of `bench/bench.ts` (echo or HELLO), written to two files.
 *
 * @module
 */

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { FrameEncoder } from "../mod.ts";
import { buildPlan, type LoadOptions, type LoadResult } from "./bench.ts";

const SOURCE = "bench/native-load/loadgen.c";

let built: { path?: string; reason?: string } | undefined;

/**
 * Compile the native generator if its binary is missing or older than its
 * source.
 *
 * @param root The repository root.
 * @returns The binary's path, or why there is none (not Linux, no compiler).
 */
export function nativeGenerator(root: string): { path?: string; reason?: string } {
  if (built !== undefined) return built;
  if (process.platform !== "linux") return (built = { reason: "the native generator uses epoll (Linux only)" });
  const source = join(root, SOURCE);
  const directory = join(root, ".tlvkit-tmp");
  const binary = join(directory, "loadgen");
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs) return (built = { path: binary });
  mkdirSync(directory, { recursive: true });
  for (const compiler of ["cc", "gcc", "clang"]) {
    try {
      execFileSync(compiler, ["-O2", "-o", binary, source], { stdio: ["ignore", "ignore", "pipe"], timeout: 60_000 });
      return (built = { path: binary });
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "ENOENT") continue;
      const stderr = String((error as { stderr?: unknown }).stderr ?? "").trim().split("\n")[0];
      return (built = { reason: `${compiler} failed on ${SOURCE}: ${stderr}` });
    }
  }
  return (built = { reason: "no C compiler (cc, gcc or clang) found" });
}

interface NativeReport {
  frames: number;
  seconds: number;
  framesPerSecond: number;
  megabytesPerSecondIn: number;
  megabytesPerSecondOut: number;
  errors: number;
  p50Micros: number;
  p99Micros: number;
  generatorCpu: number;
  serverCpuMicrosPerFrame?: number;
  serverCpu?: number;
  serverTicks?: number;
  ticksPerSecond?: number;
  serverPeakKiB?: number;
}

/** Write the plan's requests and expected replies as two files of frames; returns their paths. */
function writePlanFiles(root: string, options: LoadOptions): [string, string] {
  const plan = buildPlan(options.mode, options.size, options.expect, options.window);
  const encoder = new FrameEncoder();
  const replies = plan.replyBodies.map((body, i) => encoder.encode(plan.replyIds[i]!, body));
  const replyBytes = new Uint8Array(replies.reduce((total, frame) => total + frame.length, 0));
  let offset = 0;
  for (const frame of replies) {
    replyBytes.set(frame, offset);
    offset += frame.length;
  }
  const directory = join(root, ".tlvkit-tmp");
  mkdirSync(directory, { recursive: true });
  const stem = join(directory, `plan-${options.mode}-${options.size}-${options.expect}-${options.window}-${process.pid}`);
  writeFileSync(`${stem}.requests`, plan.ring.subarray(0, plan.offsets[plan.k]!));
  writeFileSync(`${stem}.replies`, replyBytes);
  return [`${stem}.requests`, `${stem}.replies`];
}

/**
 * Run one load (echo or HELLO) with the native generator.
 *
 * @param root The repository root (plan files go to its `.tlvkit-tmp/`).
 * @param binary From {@link nativeGenerator}.
 * @param options Connections, window, size, mode, duration, warm-up, server pid.
 * @param cpu Pin the generator to this CPU.
 * @returns The same figures as the JavaScript generator's `runLoad`.
 */
export function runNativeLoad(root: string, binary: string, options: LoadOptions, cpu: number | undefined): Promise<LoadResult> {
  const [requests, replies] = writePlanFiles(root, options);
  const args = [
    "--host", options.host,
    "--port", String(options.port),
    "--requests", requests,
    "--replies", replies,
    "--connections", String(options.connections),
    "--window", String(options.window),
    "--duration", String(options.duration),
    "--warmup", String(options.warmup),
  ];
  if (options.serverPid !== undefined) args.push("--pid", String(options.serverPid));
  if (cpu !== undefined) args.push("--cpu", String(cpu));
  return new Promise((resolveRun, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr = (stderr + text).slice(-4096)));
    const limit = setTimeout(() => child.kill("SIGKILL"), (options.duration + options.warmup + 30) * 1000);
    child.once("error", (error) => {
      clearTimeout(limit);
      rmSync(requests, { force: true });
      rmSync(replies, { force: true });
      reject(new Error(`native generator failed to start: ${error.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(limit);
      rmSync(requests, { force: true });
      rmSync(replies, { force: true });
      const line = stdout.trim().split("\n").pop() ?? "";
      let report: NativeReport;
      try {
        report = JSON.parse(line) as NativeReport;
      } catch {
        reject(new Error(`native generator exited (${code ?? signal}) without a result; stderr: ${stderr.trim().slice(-500)}`));
        return;
      }
      const errorSamples = stderr.trim() === "" ? [] : stderr.trim().split("\n").slice(0, 5);
      if (report.errors > 0 && errorSamples.length === 0) errorSamples.push(`${report.errors} error(s), exit ${code ?? signal}`);
      const serverCpu = report.serverCpuMicrosPerFrame;
      resolveRun({
        mode: options.mode,
        size: options.size,
        connections: options.connections,
        window: options.window,
        generator: "native (C, epoll)",
        seconds: report.seconds,
        frames: report.frames,
        framesPerSecond: report.framesPerSecond,
        mbpsIn: report.megabytesPerSecondIn,
        mbpsOut: report.megabytesPerSecondOut,
        p50Us: report.p50Micros,
        p99Us: report.p99Micros,
        maxUs: NaN,
        generatorCpuUsPerFrame: report.frames > 0 ? (report.generatorCpu * report.seconds * 1e6) / report.frames : NaN,
        generatorCpuShare: report.generatorCpu,
        server: serverCpu === undefined || options.serverPid === undefined ? undefined : {
          pid: options.serverPid,
          cpuUsPerFrame: serverCpu,
          cpuShare: report.serverCpu ?? NaN,
          ticks: report.serverTicks ?? NaN,
          ticksPerSecond: report.ticksPerSecond ?? NaN,
          peakRssKiB: report.serverPeakKiB,
        },
        errors: report.errors,
        errorSamples,
      });
    });
  });
}
