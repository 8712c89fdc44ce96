/**
 * Build the npm package's JavaScript: compile `mod.ts` and `src/` with the
 * repository's `tsc` (tsconfig.build.json: ESM, `.d.ts` files, relative
 * imports rewritten from `.ts` to `.js`) into `dist/npm/`, then make
 * `dist/npm/src/cli.js` the package's `bin` (a `#!/usr/bin/env node` line,
 * executable). `npm pack` and `npm publish` run it (`prepack`).
 *
 * ```sh
 * npm run build:npm
 * ```
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const OUT = join(ROOT, "dist", "npm");
const CLI = join(OUT, "src", "cli.js");
const SHEBANG = "#!/usr/bin/env node\n";

function main(): number {
  rmSync(OUT, { recursive: true, force: true });
  const local = join(ROOT, "node_modules", ".bin", "tsc");
  const tsc = existsSync(local) ? local : "tsc";
  const result = spawnSync(tsc, ["-p", join(ROOT, "tsconfig.build.json")], { cwd: ROOT, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`build-npm: tsc failed (${result.error?.message ?? `exit ${result.status}`})`);
    return 1;
  }
  // The shebang is added here, not in src/cli.ts: the Node single executable
  // bundles src/cli.ts as CommonJS, where a shebang is not allowed mid-wrapper.
  const cli = readFileSync(CLI, "utf8");
  if (!cli.startsWith("#!")) writeFileSync(CLI, SHEBANG + cli);
  chmodSync(CLI, 0o755);
  console.log(`build-npm: built ${OUT}`);
  return 0;
}

process.exitCode = main();
