import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { detectRuntime } from "../src/transport/detect.ts";
import { ROOT, runToEnd, runtimeCommand, stopAll } from "./_processes.ts";

const RUNTIME = detectRuntime();

after(() => stopAll());

/** What each example prints, whole. */
const EXPECTED: Record<string, string> = {
  "chat_room.ts": `alice saw:
  welcome alice; here: nobody yet
  * bob joined
  alice: hi bob
  bob: hi alice, bye!
  * bob left
bob saw:
  welcome bob; here: alice
  alice: hi bob
  bob: hi alice, bye!
`,
  "rpc_service.ts": `add(2, 3) = 5
divide(1, 4) = 0.25
shout("hello") = HELLO!
add(40, 2) = 42
divide(1, 0) threw RpcError: divide failed: division by zero
stats: 1 session open, 6 frames in, 5 out (this reply not yet counted)
`,
  "layout_bridge.ts": `legacy frame on the wire: 21 00 00 00 7b 22 69 64 ...
legacy client got: {"id":7,"data":"server has received msg, msg data is hello from 1998"}
legacy client got: {"id":8,"data":"server has received msg, msg data is second"}
`,
};

describe(`examples on ${RUNTIME}`, () => {
  it("has an expected output for every example, and nothing else", () => {
    const files = readdirSync(join(ROOT, "examples")).filter((name) => name.endsWith(".ts")).sort();
    assert.deepEqual(files, Object.keys(EXPECTED).sort());
  });

  for (const [file, expected] of Object.entries(EXPECTED)) {
    it(`examples/${file} runs as its header says and prints what it should`, async () => {
      const source = readFileSync(join(ROOT, "examples", file), "utf8");
      const command = runtimeCommand(RUNTIME, `examples/${file}`);
      // The header's command for this runtime (the test adds only --quiet under Deno).
      const header = command.map((part) => part.replace(/^.*node_modules\/\.bin\//, "")).filter((part) => part !== "--quiet").join(" ");
      assert.ok(source.includes(` * ${header}\n`), `the header of ${file} shows \`${header}\``);
      assert.match(source, /from "\.\.\/mod\.ts";/, "it imports the public API");
      const result = await runToEnd(command, 60_000);
      assert.equal(result.stderr, "", "nothing on stderr");
      assert.equal(result.code, 0);
      assert.equal(result.stdout, expected);
    });
  }
});
