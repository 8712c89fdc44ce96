import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Files allowed to touch a runtime: the transport adapters and the one runtime file. */
const RUNTIME_FILES = /^src\/(transport\/(node|deno|bun)\.ts|runtime\/.*\.ts)$/;

/** Uses of a runtime's own API that shared code must not make. */
const RUNTIME_USES: Array<[string, RegExp]> = [
  ["the Deno global", /\bDeno\s*\./],
  ["the Bun global", /\bBun\s*\./],
  ["node:net", /["']node:net["']/],
  ["the process global", /(?<![.\w])process\s*\./],
  ["require()", /\brequire\s*\(/],
];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

describe("portability", () => {
  it("keeps every runtime API out of src/ except the adapters and the runtime file", () => {
    const files = ["mod.ts", ...sourceFiles("src")];
    assert.ok(files.length > 3, "found the sources");
    const offences: string[] = [];
    for (const file of files) {
      if (RUNTIME_FILES.test(file)) continue;
      const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
      lines.forEach((line, index) => {
        const code = line.replace(/\/\/.*$/, "");
        if (/^\s*\*/.test(code)) return; // JSDoc prose and examples
        for (const [what, pattern] of RUNTIME_USES) {
          if (pattern.test(code)) offences.push(`${file}:${index + 1} uses ${what}: ${line.trim()}`);
        }
      });
    }
    assert.deepEqual(offences, []);
  });
});
