/**
 * Checks the documentation keeps its promises: the README stays short enough
 * to read in ten minutes (at most 350 lines), and `docs/protocol.md`, which
 * the code cites, ships in the npm package. Part of `npm test`'s checks.
 *
 * ```sh
 * node --import tsx scripts/check-docs.ts
 * ```
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const README_MAX_LINES = 350;

function problems(): string[] {
  const found: string[] = [];
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const lines = readme.endsWith("\n") ? readme.split("\n").length - 1 : readme.split("\n").length;
  if (lines > README_MAX_LINES) found.push(`README.md has ${lines} lines; keep it to ${README_MAX_LINES} (move detail to docs/)`);
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files?: string[] };
  if (!(pkg.files ?? []).includes("docs/protocol.md")) found.push(`package.json "files" lacks docs/protocol.md, which the code cites`);
  return found;
}

const found = problems();
for (const problem of found) console.error(`check-docs: ${problem}`);
if (found.length === 0) console.log("check-docs: README.md within 350 lines; docs/protocol.md ships in the package");
process.exitCode = found.length === 0 ? 0 : 1;
