/**
 * The benchmarks' Node.js servers as npm users run them: compiled JavaScript,
 * not TypeScript through `tsx`, whose esbuild transform (`keepNames`) adds a
 * property to every named function, closures included, and grows the heap at
 * start-up: both move the RSS per idle session, tlvkit's and the raw echo's,
 * away from what users get (docs/performance.md, "Node servers: compiled, not
 * through tsx").
 *
 * Built once per process, on first use:
 *
 * 1. `npm run build:npm`: tlvkit's package in `dist/npm/` (tsc), what
 *    `npm install tlvkit` gets; `tlvkit serve` runs as `dist/npm/src/cli.js`.
 * 2. `tsc -p bench/tsconfig.node-servers.json`: the benchmark servers that are
 *    not in the package, `bench/handler-echo.ts` and `bench/raw-echo/node.ts`,
 *    compiled with the package's own settings into `dist/npm/bench/`, so that
 *    handler-echo's `../mod.ts` is the package's `dist/npm/mod.js`. (tsc
 *    writes the package's files it reaches again, byte for byte the same.)
 *
 * `npm pack` rebuilds `dist/npm/` from scratch, so `dist/npm/bench/` never
 * ships. Deno and Bun run the TypeScript sources directly, as their users do.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The servers that run compiled on Node, by their TypeScript source. */
export type NodeServerSource = "src/cli.ts" | "bench/handler-echo.ts" | "bench/raw-echo/node.ts";

/** `undefined` before the build, then `null` when it worked or why it failed. */
let buildError: string | null | undefined;

function run(command: string, args: string[], root: string): string | undefined {
  const result = spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: 180_000 });
  if (result.status === 0) return undefined;
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-5).join("; ");
  return `${[command, ...args].join(" ")} failed (${result.error?.message ?? `exit ${result.status}`}): ${output}`;
}

/**
 * Build tlvkit's package and the benchmarks' Node servers into `dist/npm/`,
 * once per process (later calls return at once).
 *
 * @param root The repository root.
 * @throws {Error} When a build step fails, with the end of its output.
 */
export function buildNodeServers(root: string): void {
  if (buildError === undefined) {
    const local = join(root, "node_modules", ".bin", "tsc");
    buildError = run("npm", ["run", "--silent", "build:npm"], root) ??
      run(existsSync(local) ? local : "tsc", ["-p", join(root, "bench", "tsconfig.node-servers.json")], root) ??
      null;
  }
  if (buildError !== null) throw new Error(`Cannot build the Node servers: ${buildError}`);
}

/**
 * The command that runs a server on Node.js from its compiled JavaScript,
 * building it first if this process has not yet.
 *
 * @param root The repository root.
 * @param source The server's TypeScript source, relative to the root.
 * @returns `node` and the compiled file, relative to the root: run it there,
 *   with the server's arguments appended.
 * @throws {Error} When the build fails.
 */
export function builtNodeCommand(root: string, source: NodeServerSource): string[] {
  buildNodeServers(root);
  return ["node", `dist/npm/${source.replace(/\.ts$/, ".js")}`];
}
