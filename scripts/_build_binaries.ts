/**
 * Building tlvkit's command line (`src/cli.ts`) into one executable per
 * runtime, in `dist/`:
 *
 * - `tlvkit-bun`: `bun build --compile`. With no `--target` Bun copies its own
 *   executable, which needs no download; on an x64 CPU without AVX2 it asks
 *   for the `bun-linux-x64-baseline` target instead, which Bun fetches from the
 *   npm registry, and falls back on its own executable (in one line) when that
 *   fails.
 * - `tlvkit-node`: a Node.js single executable application. esbuild bundles
 *   the CLI into one CommonJS file, the Node running this script makes the
 *   preparation blob, a copy of that same Node gets it injected by `postject`.
 * - `tlvkit-deno`: `deno compile --allow-net`, when a `denort` runtime is at
 *   hand (`DENORT_BIN`, or Deno's download cache); otherwise skipped in one
 *   line, since fetching it needs the internet.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { type Binary, CLI_ENTRY, DIST, ROOT } from "./_binaries.ts";

/** What became of one binary. */
export interface BuildOutcome {
  readonly binary: Binary;
  readonly status: "built" | "skipped" | "failed";
  /** One line: what was built with what, why it was skipped, or what failed. */
  readonly detail: string;
}

/** Choices for the build. */
export interface BuildOptions {
  /**
   * Bun's `--target` (`bun-linux-x64-baseline`, ...); `"host"` for Bun's own
   * executable.
   * @default "bun-linux-x64-baseline" on an x64 Linux CPU without AVX2, else "host"
   */
  bunTarget?: string;
}

/** The sentinel Node.js looks for to know a blob was injected (Node's SEA docs). */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
/** Intermediate files of the Node build: the bundle, the SEA config, the blob. */
const NODE_WORK = join(DIST, ".tlvkit-node");

function tool(name: string): string {
  return join(ROOT, "node_modules", ".bin", name);
}

/** Run a command in the repository root; the result's `error` holds its output's last lines when it fails. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): { ok: boolean; error: string } {
  const result = spawnSync(command, args, { cwd: ROOT, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.error) return { ok: false, error: result.error.message };
  if (result.status === 0) return { ok: true, error: "" };
  const lines = `${result.stdout}\n${result.stderr}`.trim().split("\n").filter(Boolean);
  return { ok: false, error: `${command} exited ${result.status ?? result.signal}: ${lines.slice(-3).join(" / ")}` };
}

/** Whether the CPU has AVX2 (Bun's default x64 build needs it); undefined where /proc/cpuinfo is unreadable. */
export function cpuHasAvx2(): boolean | undefined {
  try {
    return /^flags\s*:.*\bavx2\b/m.test(readFileSync("/proc/cpuinfo", "utf8"));
  } catch {
    return undefined;
  }
}

/** The Bun target to ask for by default: baseline x64 when the CPU lacks AVX2, else the host's own Bun. */
export function defaultBunTarget(): string {
  return process.platform === "linux" && process.arch === "x64" && cpuHasAvx2() === false ? "bun-linux-x64-baseline" : "host";
}

function buildBun(binary: Binary, target: string): BuildOutcome {
  const bun = tool("bun");
  if (!existsSync(bun)) return { binary, status: "skipped", detail: "no node_modules/.bin/bun: run npm ci" };
  // A compiled Bun binary would otherwise read .env and bunfig.toml from the
  // folder it is started in; the source CLI does neither.
  const args = ["build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", CLI_ENTRY, "--outfile", binary.path];
  if (target !== "host") {
    const targeted = run(bun, [...args, `--target=${target}`]);
    if (targeted.ok) return { binary, status: "built", detail: `bun build --compile --target=${target}` };
    console.log(`bun: no Bun runtime for ${target} (offline, or no such target): building with this machine's own bun instead`);
  }
  const built = run(bun, args);
  return built.ok
    ? { binary, status: "built", detail: "bun build --compile (the host's own bun executable)" }
    : { binary, status: "failed", detail: built.error };
}

function buildNode(binary: Binary): BuildOutcome {
  if (process.versions["bun"] !== undefined || process.versions["deno"] !== undefined) {
    return { binary, status: "skipped", detail: "run this script with Node.js: the binary is a copy of the node running it" };
  }
  if (!readFileSync(process.execPath).includes(SEA_FUSE)) {
    return { binary, status: "skipped", detail: `${process.execPath} was built without single executable support` };
  }
  rmSync(NODE_WORK, { recursive: true, force: true });
  mkdirSync(NODE_WORK, { recursive: true });
  const bundle = join(NODE_WORK, "cli.cjs");
  const blob = join(NODE_WORK, "sea-prep.blob");
  const config = join(NODE_WORK, "sea-config.json");
  // Node 20's single executables run one CommonJS script that may require
  // only built-in modules: everything else must be in the bundle.
  const bundled = run(tool("esbuild"), [
    CLI_ENTRY,
    "--bundle",
    "--platform=node",
    "--format=cjs",
    `--target=node${process.versions.node}`,
    `--outfile=${bundle}`,
    "--log-level=warning",
  ]);
  if (!bundled.ok) return { binary, status: "failed", detail: bundled.error };
  writeFileSync(config, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }, null, 2));
  // The blob must come from the very Node that is copied below.
  const prepared = run(process.execPath, ["--experimental-sea-config", config]);
  if (!prepared.ok) return { binary, status: "failed", detail: prepared.error };
  rmSync(binary.path, { force: true });
  copyFileSync(process.execPath, binary.path);
  chmodSync(binary.path, 0o755);
  const injected = run(process.execPath, [join(ROOT, "node_modules", "postject", "dist", "cli.js"), binary.path, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE]);
  if (!injected.ok) {
    rmSync(binary.path, { force: true });
    return { binary, status: "failed", detail: injected.error };
  }
  return { binary, status: "built", detail: `Node ${process.version} single executable (${process.execPath} + postject)` };
}

/** The `denort` runtime `deno compile` will use (DENORT_BIN, else the cache), or undefined when it would have to download one. */
function findDenort(deno: string): string | undefined {
  const given = process.env["DENORT_BIN"];
  if (given) return given;
  const info = spawnSync(deno, ["info", "--json"], { cwd: ROOT, encoding: "utf8" });
  const version = spawnSync(deno, ["eval", "console.log(Deno.version.deno, Deno.build.target)"], { cwd: ROOT, encoding: "utf8" });
  if (info.status !== 0 || version.status !== 0) return undefined;
  const denoDir = (JSON.parse(info.stdout) as { denoDir?: string }).denoDir;
  const [denoVersion, target] = version.stdout.trim().split(" ");
  if (!denoDir || !denoVersion || !target) return undefined;
  // Where `deno compile` caches what it downloads (DENO_DIR/dl/release/vX.Y.Z/).
  const cached = join(denoDir, "dl", "release", `v${denoVersion}`, `denort-${target}.zip`);
  return existsSync(cached) ? cached : undefined;
}

function buildDeno(binary: Binary): BuildOutcome {
  const deno = tool("deno");
  if (!existsSync(deno)) return { binary, status: "skipped", detail: "no node_modules/.bin/deno: run npm ci" };
  const denort = findDenort(deno);
  if (denort === undefined) {
    return {
      binary,
      status: "skipped",
      detail: "no denort runtime (set DENORT_BIN, or run with internet so deno compile downloads it)",
    };
  }
  if (!existsSync(denort)) return { binary, status: "skipped", detail: `DENORT_BIN names no file: ${denort}` };
  // Without --exclude, deno compile embeds all of node_modules (the whole
  // toolchain, some 240 MB); the CLI imports nothing from it.
  const built = run(deno, ["compile", "--quiet", "--allow-net", "--exclude", "node_modules", "--output", binary.path, CLI_ENTRY], {
    ...process.env,
    NO_COLOR: "1",
  });
  return built.ok
    ? { binary, status: "built", detail: `deno compile --allow-net (denort: ${denort})` }
    : { binary, status: "failed", detail: built.error };
}

/**
 * Build one binary into `dist/`.
 *
 * @param binary Which one.
 * @param options Build choices.
 * @returns What became of it.
 */
export function buildBinary(binary: Binary, options: BuildOptions = {}): BuildOutcome {
  mkdirSync(DIST, { recursive: true });
  switch (binary.runtime) {
    case "bun":
      return buildBun(binary, options.bunTarget ?? defaultBunTarget());
    case "node":
      return buildNode(binary);
    case "deno":
      return buildDeno(binary);
  }
}
