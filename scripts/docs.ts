/**
 * Write the HTML API reference, generated from the JSDoc of `mod.ts`'s
 * exports, to `docs/api/` (ignored by git): `npm run docs`, then open
 * `docs/api/index.html`.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const OUT = join(ROOT, "docs", "api");
const local = join(ROOT, "node_modules", ".bin", "deno");

rmSync(OUT, { recursive: true, force: true });
const result = spawnSync(existsSync(local) ? local : "deno", ["doc", "--html", "--name=tlvkit", `--output=${OUT}`, "mod.ts", "cli.ts"], {
  cwd: ROOT,
  stdio: "inherit",
});
if (result.status === 0) console.log(`docs: wrote ${join(OUT, "index.html")}`);
else console.error(`docs: deno doc failed (${result.error?.message ?? `exit ${result.status}`})`);
process.exitCode = result.status ?? 1;
