/**
 * Build tlvkit as single executables, one per runtime, into `dist/`
 * (`tlvkit-bun`, `tlvkit-node`, `tlvkit-deno`); see `_build_binaries.ts` for
 * how and what each needs. Prints one line per binary: built, skipped (and
 * why) or failed; exits 1 if any failed.
 *
 * ```sh
 * npm run build:bin
 * node --import tsx scripts/build-bin.ts [--only bun,node,deno] [--bun-target bun-linux-x64-baseline|host]
 * ```
 *
 * @module
 */

import { statSync } from "node:fs";
import { relative } from "node:path";
import process from "node:process";
import { chooseBinaries, ROOT } from "./_binaries.ts";
import { buildBinary, type BuildOptions } from "./_build_binaries.ts";
import { scriptArgs } from "./_script_args.ts";

const USAGE = "Usage: build-bin.ts [--only bun,node,deno] [--bun-target TARGET|host]";

function main(): number {
  const values = scriptArgs("build-bin", USAGE, { only: { type: "string" }, "bun-target": { type: "string" } }, (v) => chooseBinaries(v.only));
  const options: BuildOptions = values["bun-target"] === undefined ? {} : { bunTarget: values["bun-target"] };
  let failed = 0;
  for (const binary of chooseBinaries(values.only)) {
    const started = performance.now();
    const outcome = buildBinary(binary, options);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const where = relative(ROOT, binary.path);
    if (outcome.status === "built") {
      const mib = (statSync(binary.path).size / 2 ** 20).toFixed(1);
      console.log(`built   ${where} (${mib} MiB, ${seconds} s): ${outcome.detail}`);
    } else {
      console.log(`${outcome.status === "skipped" ? "skipped" : "FAILED "} ${where}: ${outcome.detail}`);
      if (outcome.status === "failed") failed++;
    }
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
