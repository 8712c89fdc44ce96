import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Files allowed to touch a runtime: the transport adapters, their structural types and Node internals. */
const RUNTIME_FILES = /^src\/transport\/(node|deno|bun|_deno_types|_bun_types|_node_internals)\.ts$/;

/** The command line may also start processes (serve --workers): it is a program, not the library. */
const PROCESS_FILES = /^src\/(cli\.ts|cli\/)/;
const PROCESS_USES = new Set(["node:cluster", "node:child_process"]);

/** Uses of a runtime's own API that shared code must not make. */
const RUNTIME_USES: Array<[string, RegExp]> = [
  ["the Deno global", /\bDeno\s*\./],
  ["the Bun global", /\bBun\s*\./],
  ["node:net", /["']node:net["']/],
  ["node:cluster", /["']node:cluster["']/],
  ["node:child_process", /["']node:child_process["']/],
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

/** Runtime API uses in one file's source, as "file:line uses what: code". */
function offencesIn(file: string, source: string): string[] {
  if (RUNTIME_FILES.test(file)) return [];
  // Process services may come from node:process, which all three runtimes ship.
  const importsProcess = /from "node:process"/.test(source);
  const offences: string[] = [];
  source.split("\n").forEach((line, index) => {
    const code = line.replace(/\/\/.*$/, "");
    if (/^\s*\*/.test(code)) return; // JSDoc prose and examples
    for (const [what, pattern] of RUNTIME_USES) {
      if (what === "the process global" && importsProcess) continue;
      if (PROCESS_USES.has(what) && PROCESS_FILES.test(file)) continue;
      if (pattern.test(code)) offences.push(`${file}:${index + 1} uses ${what}: ${line.trim()}`);
    }
  });
  return offences;
}

describe("portability", () => {
  it("keeps every runtime API out of src/ except the adapters", () => {
    const files = ["mod.ts", ...sourceFiles("src")];
    assert.ok(files.length > 10, "found the sources");
    const offences = files.flatMap((file) => offencesIn(file, readFileSync(join(ROOT, file), "utf8")));
    assert.deepEqual(offences, []);
  });

  it("would catch a runtime global in shared code", () => {
    assert.equal(offencesIn("src/session.ts", "const l = Deno.listen({ port: 1 });").length, 1);
    assert.equal(offencesIn("src/session.ts", "Bun.connect({});").length, 1);
    assert.equal(offencesIn("src/session.ts", 'import net from "node:net";').length, 1);
    assert.equal(offencesIn("src/session.ts", "process.exit(1);").length, 1);
    assert.equal(offencesIn("src/cli.ts", 'import process from "node:process";\nprocess.exit(1);').length, 0);
    assert.equal(offencesIn("src/transport/deno.ts", "Deno.listen({ port: 1 });").length, 0);
    assert.equal(offencesIn("src/server.ts", 'import cluster from "node:cluster";').length, 1);
    assert.equal(offencesIn("src/cli/workers.ts", 'import cluster from "node:cluster";').length, 0);
  });
});
