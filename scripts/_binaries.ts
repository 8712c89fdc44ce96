/**
 * The single binaries that `npm run build:bin` makes, where they go, and the
 * environment they are tested and measured in (no `node_modules/.bin` on the
 * PATH, so nothing can fall back on the toolchain the repository installs).
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { RuntimeName } from "../src/transport/types.ts";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** Where the binaries are written (ignored by git). */
export const DIST: string = join(ROOT, "dist");

/** The command line every binary is compiled from. */
export const CLI_ENTRY: string = join(ROOT, "src", "cli.ts");

/** One single binary: the runtime inside it and its path. */
export interface Binary {
  readonly runtime: RuntimeName;
  /** File name in `dist/`: `tlvkit-node`, `tlvkit-deno`, `tlvkit-bun`. */
  readonly name: string;
  readonly path: string;
}

/** The binaries, in the order they are built and tested. */
export const BINARIES: readonly Binary[] = (["bun", "node", "deno"] as const).map((runtime) => ({
  runtime,
  name: `tlvkit-${runtime}`,
  path: join(DIST, `tlvkit-${runtime}`),
}));

/**
 * Parse a `--only bun,node` list into binaries, in build order.
 *
 * @param list Comma-separated runtime names, or undefined for all.
 * @returns The chosen binaries.
 * @throws {RangeError} On a name that is not a runtime.
 */
export function chooseBinaries(list: string | undefined): Binary[] {
  if (list === undefined) return [...BINARIES];
  const names = list.split(",").map((name) => name.trim()).filter(Boolean);
  for (const name of names) {
    if (!BINARIES.some((binary) => binary.runtime === name)) {
      throw new RangeError(`Unknown runtime "${name}" in --only: use bun, node or deno`);
    }
  }
  return BINARIES.filter((binary) => names.includes(binary.runtime));
}

/**
 * This process's environment without what would let a binary lean on the
 * repository's toolchain: PATH entries inside a `node_modules` folder (npm
 * scripts add `node_modules/.bin`), and `NODE_OPTIONS` (which could carry
 * `--import tsx`).
 *
 * @returns The environment to run binaries with.
 */
export function binaryEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["NODE_OPTIONS"];
  env["PATH"] = (env["PATH"] ?? "").split(":").filter((dir) => dir !== "" && !dir.includes("node_modules")).join(":");
  return env;
}
