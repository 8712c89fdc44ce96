import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { detectRuntime } from "../src/transport/detect.ts";
import type { RuntimeName } from "../src/transport/types.ts";
import { type Child, runToEnd, runtimeCommand, start, stopAll, escapedErrors } from "./_processes.ts";
import { runSeed } from "./_seeded_random.ts";

const RUNTIMES: RuntimeName[] = ["node", "deno", "bun"];
const SEED = runSeed();
// Every runtime's run of the suite would repeat the same nine processes pairs;
// the matrix is one check, so it runs once per `npm test`, in the Node run.
const SKIP = detectRuntime() === "node" ? false : "the 9-pair interop matrix runs once per npm test, in the Node run";

after(async () => {
  await stopAll();
  assert.deepEqual(escapedErrors(), [], "no child reported an error that escaped every handler");
});

describe(`interop matrix: server on each runtime x client on each runtime (seed ${SEED})`, () => {
  for (const serverRuntime of RUNTIMES) {
    it(`a ${serverRuntime} server exchanges 1,000 random frames each way with node, deno and bun clients`, { skip: SKIP }, async () => {
      let server: Child | undefined;
      try {
        server = start([...runtimeCommand(serverRuntime, "src/cli.ts"), "serve", "--port", "0"]);
        const match = await server.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 20_000);
        const port = match[1]!;
        for (const clientRuntime of RUNTIMES) {
          const result = await runToEnd(
            [...runtimeCommand(clientRuntime, "tests/fixtures/interop_client.ts"), "--port", port, "--seed", String(SEED), "--count", "1000"],
            90_000,
          );
          assert.equal(
            result.stdout.trim(),
            "interop ok: 1000 frames each way",
            `${clientRuntime} client against ${serverRuntime} server (rerun with TLVKIT_SEED=${SEED}): ${result.stdout}${result.stderr}`,
          );
          assert.equal(result.code, 0);
        }
        server.kill("SIGTERM");
        const { code } = await server.exited;
        assert.equal(code, 0, `${serverRuntime} server exit: ${server.stderr}`);
      } finally {
        server?.kill("SIGKILL");
      }
    });
  }
});
