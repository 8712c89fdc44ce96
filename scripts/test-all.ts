/**
 * The project's test command: type-check with `tsc` and `deno check`, lint
 * with `deno lint`, check that the generated worker bundle is fresh, then run the one suite in
 * `tests/` on Node, Deno and Bun, one after another. Prints
 * each tool's own output, then one summary line per step, and exits non-zero
 * if any step failed or a runtime ran no test.
 *
 * Runs on any of the three runtimes:
 *
 * ```sh
 * node --import tsx scripts/test-all.ts [--only node,deno,bun] [--no-check] [--check-only] [files...]
 * ```
 *
 * Without test files it ends with the npm package test (`test-package.ts`).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "node_modules", ".bin");
/** A step still running after this long is killed and fails. */
const STEP_TIMEOUT_MS = 25 * 60 * 1000;
/** Permissions the suite needs under Deno: sockets, child processes, files, environment, and /proc (which Deno gates behind --allow-all). */
const DENO_TEST_PERMISSIONS = ["--allow-all"];
const RUNTIMES = ["node", "deno", "bun"] as const;
type Runtime = typeof RUNTIMES[number];

interface StepResult {
  name: string;
  ok: boolean;
  detail: string;
  passed: number;
  failed: number;
  seconds: number;
}

function usage(): never {
  console.error("Usage: test-all [--only node,deno,bun] [--no-check] [--check-only] [test files...]");
  process.exit(2);
}

function tool(name: string): string {
  const local = join(BIN, name);
  if (existsSync(local)) return local;
  return name;
}

/** Run a command, echoing its output, and return exit code and captured text. */
function run(command: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; text: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    const timer = setTimeout(() => {
      text += `\n[test-all] killed after ${STEP_TIMEOUT_MS / 60000} minutes\n`;
      child.kill("SIGKILL");
    }, STEP_TIMEOUT_MS);
    child.stdout.on("data", (chunk: Uint8Array) => {
      process.stdout.write(chunk);
      text += new TextDecoder().decode(chunk);
    });
    child.stderr.on("data", (chunk: Uint8Array) => {
      process.stderr.write(chunk);
      text += new TextDecoder().decode(chunk);
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve({ code: 127, text: `${text}\n${command}: ${error.message}` });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), text });
    });
  });
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Pull passed/failed counts out of a test runner's closing lines. */
function counts(runtime: Runtime, raw: string): { passed: number; failed: number } | undefined {
  const text = raw.replace(ANSI, "");
  const last = (pattern: RegExp): number | undefined => {
    const all = [...text.matchAll(pattern)];
    const match = all[all.length - 1];
    return match ? Number(match[1]) : undefined;
  };
  if (runtime === "node") {
    const passed = last(/^[#ℹ]\s*pass (\d+)\s*$/gm);
    const failed = last(/^[#ℹ]\s*fail (\d+)\s*$/gm);
    return passed === undefined || failed === undefined ? undefined : { passed, failed };
  }
  if (runtime === "bun") {
    const passed = last(/^\s*(\d+) pass\s*$/gm);
    const failed = last(/^\s*(\d+) fail\s*$/gm);
    return passed === undefined ? undefined : { passed, failed: failed ?? 0 };
  }
  // deno: "ok | 5 passed (110 steps) | 0 failed (3s)"; node:test's it() blocks are steps.
  const all = [...text.matchAll(/(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/g)];
  const m = all[all.length - 1];
  if (!m) return undefined;
  const passed = Number(m[2] ?? m[1]);
  const failed = Number(m[4] ?? 0) + Number(m[3]);
  return { passed, failed };
}

function testFiles(given: string[]): string[] {
  if (given.length > 0) return given;
  return readdirSync(join(ROOT, "tests"))
    .filter((name) => name.endsWith("_test.ts"))
    .sort()
    .map((name) => `tests/${name}`);
}

async function step(name: string, command: string, args: string[], runtime?: Runtime): Promise<StepResult> {
  console.log(`\n[test-all] ${name}: ${[command, ...args].join(" ")}`);
  const started = Date.now();
  const { code, text } = await run(command, args, runtime === "deno" ? { NO_COLOR: "1" } : {});
  const seconds = (Date.now() - started) / 1000;
  if (!runtime) {
    return { name, ok: code === 0, detail: code === 0 ? "clean" : `exit ${code}`, passed: 0, failed: 0, seconds };
  }
  const found = counts(runtime, text);
  if (!found) {
    return { name, ok: false, detail: `exit ${code}, no test summary found`, passed: 0, failed: 0, seconds };
  }
  const ok = code === 0 && found.failed === 0 && found.passed > 0;
  const detail = `${found.passed} passed, ${found.failed} failed` +
    (found.passed === 0 ? " (no test ran)" : "") + (code !== 0 && found.failed === 0 ? ` (exit ${code})` : "");
  return { name, ok, detail, passed: found.passed, failed: found.failed, seconds };
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: {
        only: { type: "string" },
        "no-check": { type: "boolean", default: false },
        "check-only": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
    });
  } catch (error) {
    console.error(`test-all: ${(error as Error).message}`);
    usage();
  }
  if (parsed.values.help) usage();
  const only = parsed.values.only?.split(",").map((s) => s.trim()).filter(Boolean) ?? [...RUNTIMES];
  for (const name of only) {
    if (!(RUNTIMES as readonly string[]).includes(name)) {
      console.error(`test-all: unknown runtime "${name}" in --only (use node, deno, bun)`);
      process.exit(2);
    }
  }
  const files = testFiles(parsed.positionals);
  const results: StepResult[] = [];

  if (!parsed.values["no-check"]) {
    results.push(await step("tsc", tool("tsc"), ["--noEmit", "-p", "."]));
    results.push(await step("deno check", tool("deno"), ["check", "mod.ts", "cli.ts", "src/", "tests/", "scripts/", "bench/", "examples/"]));
    // The worker-thread bundle (serve --workers on Deno) matches the sources.
    results.push(await step("worker bundle", "node", ["--import", "tsx", "scripts/build-thread-worker.ts", "--check"]));
    // Deno's linter over everything (it found an unmarked control-character regex once).
    results.push(await step("lint", tool("deno"), ["lint", "--quiet"]));
    // Every public symbol documented.
    results.push(await step("doc lint", tool("deno"), ["doc", "--lint", "mod.ts", "cli.ts"]));
    // Every @example in the public API's JSDoc must type-check and run.
    results.push(await step("examples", tool("deno"), ["test", "--doc", "--parallel", "--allow-read", "--allow-net", "--quiet", "mod.ts", "cli.ts", "src/"]));
    // What JSR would get: the files deno.json publishes, free of slow types (runs offline).
    results.push(await step("jsr", tool("deno"), ["publish", "--dry-run", "--allow-dirty", "--quiet"]));
  }
  if (!parsed.values["check-only"]) {
    if (only.includes("node")) {
      results.push(await step("node", "node", ["--import", "tsx", "--test", "--test-reporter=spec", ...files], "node"));
    }
    if (only.includes("deno")) {
      results.push(await step("deno", tool("deno"), ["test", ...DENO_TEST_PERMISSIONS, ...files], "deno"));
    }
    if (only.includes("bun")) {
      results.push(await step("bun", tool("bun"), ["test", "--timeout", "120000", ...files.map((f) => `./${f}`)], "bun"));
    }
  }

  // The npm package as users get it, on the runtimes asked for; not when only some test files were asked for.
  if (!parsed.values["check-only"] && parsed.positionals.length === 0) {
    results.push(await step("package", "node", ["--import", "tsx", "scripts/test-package.ts", "--only", only.join(",")]));
  }

  console.log("\n[test-all] summary");
  for (const r of results) {
    console.log(`  ${r.ok ? "ok  " : "FAIL"}  ${r.name.padEnd(10)} ${r.detail} (${r.seconds.toFixed(1)} s)`);
  }
  const passed = results.reduce((n, r) => n + r.passed, 0);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  const allOk = results.every((r) => r.ok);
  if (results.some((r) => r.passed > 0 || r.failed > 0)) {
    console.log(`total: ${passed} passed, ${allOk ? failed : Math.max(failed, 1)} failed`);
  }
  process.exit(allOk ? 0 : 1);
}

await main();
