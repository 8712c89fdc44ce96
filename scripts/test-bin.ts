/**
 * Proves each single binary in `dist/` speaks the real protocol: builds what
 * can be built (`npm run build:bin`), then, for every binary, runs it from an
 * empty temporary folder with no `node_modules` on the PATH and checks
 * `--version`, `--help`, a bad option (one line, exit 2), `serve --port 0`
 * and its `listening on` line, HELLO and echo frames from a raw TCP client,
 * `send` from the binary itself, a second server on the same port (one line,
 * exit 1), SIGTERM with a session open (drained, exit 0), a storm of
 * connect-and-reset peers (ordinary clients served, then SIGTERM exits 0),
 * `--workers 2`, and `--cluster` against a `redis-server` of its own (skipped,
 * saying so, where none is installed).
 *
 * Prints one line per check, one line for each binary skipped and why, then
 * `test-bin: N passed, N failed, N skipped`; exits 1 if any check failed.
 *
 * ```sh
 * npm run test:bin
 * node --import tsx scripts/test-bin.ts [--no-build] [--only bun,node,deno]
 * ```
 *
 * The whole command-line battery runs against a binary too:
 * `TLVKIT_CLI=dist/tlvkit-node node --import tsx --test tests/cli_test.ts`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import process from "node:process";
import { encodeFrame, type Frame } from "../mod.ts";
import { HELLO_ID } from "../cli.ts";
import { WHOAMI_ID } from "../src/pubsub_app.ts";
import { VERSION } from "../src/version.ts";
import { until, within } from "../tests/_async.ts";
import { OrdinaryClients } from "../tests/_ordinary_clients.ts";
import { type Child, runToEnd, runtimeCommand, start, type StartOptions, stopAll } from "../tests/_processes.ts";
import { type RawPeer, rawPeer } from "../tests/_raw_peer.ts";
import { NO_REDIS, redis, stopRedis } from "../tests/_redis_server.ts";
import { type Binary, binaryEnv, chooseBinaries, ROOT } from "./_binaries.ts";
import { buildBinary } from "./_build_binaries.ts";
import { scriptArgs } from "./_script_args.ts";

const USAGE = "Usage: test-bin.ts [--no-build] [--only bun,node,deno]";
const LISTENING = /^listening on 127\.0\.0\.1:(\d+)$/m;
const utf8 = new TextEncoder();
const text = new TextDecoder();

const tally = { passed: 0, failed: 0, skipped: 0 };

/** A failed check's reason, in one line of at most 300 characters. */
function describeFailure(error: unknown): string {
  let reason: string;
  if (error instanceof assert.AssertionError) {
    const what = error.generatedMessage ? "" : `${error.message.split("\n\n")[0]}: `;
    reason = `${what}expected ${JSON.stringify(error.expected)}, got ${JSON.stringify(error.actual)}`;
  } else {
    reason = error instanceof Error ? error.message : String(error);
  }
  const line = reason.replace(/\s*\n\s*/g, " / ").trim();
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

async function check(binary: Binary, name: string, body: () => Promise<void>): Promise<boolean> {
  try {
    await body();
    tally.passed++;
    console.log(`ok    ${binary.name}: ${name}`);
    return true;
  } catch (error) {
    tally.failed++;
    console.log(`FAIL  ${binary.name}: ${name}: ${describeFailure(error)}`);
    return false;
  }
}

function assertOneLineError(result: { code: number | null; stdout: string; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit status (stderr: ${result.stderr.trim()})`);
  assert.equal(result.stdout, "", "nothing on standard output");
  assert.equal(result.stderr.trim().split("\n").length, 1, `one line on standard error, got: ${result.stderr}`);
  assert.match(result.stderr, pattern);
}

/** The frames a raw peer has received, once there are `count`. */
async function framesOnce(peer: RawPeer, count: number): Promise<Frame[]> {
  await until(() => peer.frames().length >= count, 10_000, `${count} reply frames`);
  return peer.frames();
}

async function testBinary(binary: Binary, how: StartOptions): Promise<void> {
  const bin = binary.path;
  const run = (...args: string[]) => runToEnd([bin, ...args], 30_000, how);

  await check(binary, `--version prints "tlvkit ${VERSION}", also after each command`, async () => {
    for (const args of [["--version"], ["serve", "--version"], ["send", "--version"]]) {
      const result = await run(...args);
      assert.equal(result.code, 0, `${args.join(" ")} exit status`);
      assert.equal(result.stdout, `tlvkit ${VERSION}\n`);
    }
  });
  await check(binary, "--help prints the usage, and each command's options", async () => {
    const top = await run("--help");
    assert.equal(top.code, 0);
    assert.match(top.stdout, /^Usage: tlvkit <command>/);
    const serve = await run("serve", "--help");
    assert.equal(serve.code, 0);
    assert.match(serve.stdout, /--drain-timeout/);
    const send = await run("send", "--help");
    assert.equal(send.code, 0);
    assert.match(send.stdout, /--json/);
  });
  await check(binary, "a bad option is one line on standard error and exit 2", async () => {
    assertOneLineError(await run("serve", "--no-such-option"), 2, /^tlvkit serve: .*no-such-option/);
  });

  let server: Child | undefined;
  let port = 0;
  const listening = await check(binary, "serve --port 0 prints listening on 127.0.0.1:PORT", async () => {
    server = start([bin, "serve", "--port", "0"], how);
    port = Number((await server.waitFor(LISTENING, 20_000))[1]);
    assert.ok(port > 0);
  });
  if (!listening || server === undefined) {
    console.log(`skip  ${binary.name}: the checks that need its server (HELLO, echo, send, port in use, SIGTERM)`);
    return;
  }

  const peer = await rawPeer(port);
  try {
    await check(binary, "a raw client gets the HELLO reply and its echoes, frames split across writes", async () => {
      const hello = { id: 7, data: "hi", extra: [1] };
      const wire = Buffer.concat([
        encodeFrame(HELLO_ID, utf8.encode(JSON.stringify(hello))),
        encodeFrame(42, Uint8Array.of(0, 255, 1)),
        encodeFrame(0, new Uint8Array(0)),
        encodeFrame(65535, utf8.encode("last")),
      ]);
      peer.conn.write(wire.subarray(0, 3)); // mid-header
      await new Promise((resolve) => setTimeout(resolve, 50));
      peer.conn.write(wire.subarray(3));
      const [reply, binaryEcho, empty, last] = await framesOnce(peer, 4);
      assert.equal(reply?.id, 7, "HELLO reply on the id its body named");
      assert.deepEqual(JSON.parse(text.decode(reply.body)), { ...hello, data: "server has received msg, msg data is hi" });
      assert.deepEqual([binaryEcho?.id, [...(binaryEcho?.body ?? [])]], [42, [0, 255, 1]]);
      assert.deepEqual([empty?.id, empty?.body.length], [0, 0]);
      assert.deepEqual([last?.id, text.decode(last?.body)], [65535, "last"]);
    });
    await check(binary, "send (HELLO and --hex --count 2) prints each reply and exits 0", async () => {
      const hello = await run("send", "--port", String(port), "--json", '{"id":1,"data":"hello"}');
      assert.equal(hello.code, 0, `exit status (stderr: ${hello.stderr.trim()})`);
      const reply = '{"id":1,"data":"server has received msg, msg data is hello"}';
      assert.equal(hello.stdout, `id=1 length=${utf8.encode(reply).length} text=${reply}\n`);
      const hex = await run("send", "--port", String(port), "--id", "9", "--hex", "00ff", "--count", "2");
      assert.equal(hex.code, 0, `exit status (stderr: ${hex.stderr.trim()})`);
      assert.equal(hex.stdout, "id=9 length=2 hex=00ff\n".repeat(2));
    });
    await check(binary, "a second serve on the same port is one line on standard error and exit 1", async () => {
      assertOneLineError(await run("serve", "--port", String(port)), 1, /^tlvkit serve: /);
    });
    await check(binary, "SIGTERM with a session open drains it and exits 0", async () => {
      server!.kill("SIGTERM");
      const { code, signal } = await within(server!.exited, 10_000, "exit after SIGTERM");
      assert.equal(code, 0, `exit status (signal ${signal}; stderr: ${server!.stderr.trim().split("\n").slice(-2).join(" / ")})`);
      await within(peer.closed, 5_000, "the open session to close");
      assert.equal(server!.stdout, `listening on 127.0.0.1:${port}\n`, "nothing but the ready line on standard output");
    });
  } finally {
    peer.conn.abort();
  }

  await check(binary, "a connect-and-reset storm: ordinary clients served throughout, then SIGTERM exits 0 (twice)", async () => {
    for (let round = 1; round <= 2; round++) {
      const stormed = start([bin, "serve", "--port", "0", "--drain-timeout", "2"], how);
      try {
        const stormPort = Number((await stormed.waitFor(LISTENING, 20_000))[1]);
        const ordinary = new OrdinaryClients({ port: stormPort, workers: 2, roundsPerConnection: 10, timeoutMs: 10_000 });
        ordinary.start("storm");
        // The hostile peers run on Node from the repository (see tests/hostile_peers_test.ts).
        const peers = start([...runtimeCommand("node", "tests/fixtures/hostile_peers.ts"), "--port", String(stormPort), "--pattern", "reset", "--duration", "1500"]);
        const { code: peersCode } = await within(peers.exited, 30_000, "the storm to end");
        await ordinary.stop();
        assert.equal(peersCode, 0, `hostile peers: ${peers.stderr.trim()}`);
        assert.deepEqual(ordinary.failures, [], `round ${round}: every ordinary round trip answered`);
        assert.ok(ordinary.counts().get("storm")!.roundTrips > 0, `round ${round}: ordinary round trips during the storm`);
        stormed.kill("SIGTERM");
        const { code } = await within(stormed.exited, 2000 + 5000, "exit after SIGTERM");
        assert.equal(code, 0, `round ${round}: exit status (stderr: ${stormed.stderr.trim().split("\n").slice(-2).join(" / ")})`);
        assert.doesNotMatch(stormed.stderr, / ERROR /, `round ${round}: nothing logged as an error`);
      } finally {
        stormed.kill("SIGKILL");
      }
    }
  });
  await check(binary, "serve --workers 2: one listening line, replies, SIGTERM drains both workers and exits 0", async () => {
    const supervisor = start([bin, "serve", "--workers", "2", "--port", "0"], how);
    try {
      const workersPort = Number((await supervisor.waitFor(LISTENING, 30_000))[1]);
      for (let i = 0; i < 4; i++) {
        const reply = await run("send", "--port", String(workersPort), "--json", `{"id":${i},"data":"w"}`);
        assert.equal(reply.code, 0, `send ${i} (stderr: ${reply.stderr.trim()})`);
      }
      supervisor.kill("SIGTERM");
      const { code } = await within(supervisor.exited, 15_000, "exit after SIGTERM");
      assert.equal(code, 0, `exit status (stderr: ${supervisor.stderr.trim().split("\n").slice(-2).join(" / ")})`);
      assert.equal(supervisor.stdout, `listening on 127.0.0.1:${workersPort}\n`, "one ready line");
      const served = [...supervisor.stderr.matchAll(/worker \S+: stopped/g)].length;
      assert.equal(served, 2, "both workers reported stopping");
    } finally {
      supervisor.kill("SIGKILL");
    }
  });
  if (NO_REDIS) {
    tally.skipped++;
    console.log(`skip  ${binary.name}: serve --cluster: ${NO_REDIS}`);
    return;
  }
  await check(binary, "serve --cluster joins a Redis cluster (the redis package inside the binary): WHOAMI names the node", async () => {
    const redisServer = await redis();
    const node = start([bin, "serve", "--port", "0", "--pubsub", "--cluster", redisServer.url, "--node-id", "bin"], how);
    try {
      const nodePort = Number((await node.waitFor(LISTENING, 30_000))[1]);
      const peer = await rawPeer(nodePort);
      try {
        peer.conn.write(encodeFrame(WHOAMI_ID, utf8.encode("{}")));
        const [reply] = await framesOnce(peer, 1);
        assert.equal(reply!.id, WHOAMI_ID);
        assert.equal((JSON.parse(text.decode(reply!.body)) as { node: string }).node, "bin");
      } finally {
        peer.conn.abort();
      }
      node.kill("SIGTERM");
      assert.equal((await within(node.exited, 15_000, "exit after SIGTERM")).code, 0, node.stderr);
    } finally {
      node.kill("SIGKILL");
      await stopRedis(redisServer);
    }
  });
}

async function main(): Promise<number> {
  const values = scriptArgs("test-bin", USAGE, { "no-build": { type: "boolean" }, only: { type: "string" } }, (v) => chooseBinaries(v.only));
  // An empty folder and no node_modules on the PATH: a binary that needs the
  // repository or its toolchain fails here.
  const folder = mkdtempSync(join(tmpdir(), "tlvkit-bin-"));
  const how: StartOptions = { cwd: folder, env: binaryEnv() };
  try {
    for (const binary of chooseBinaries(values.only)) {
      const where = relative(ROOT, binary.path);
      if (!values["no-build"]) {
        const outcome = buildBinary(binary);
        if (outcome.status === "failed") {
          tally.failed++;
          console.log(`FAIL  ${binary.name}: build: ${outcome.detail}`);
          continue;
        }
        if (outcome.status === "skipped") {
          tally.skipped++;
          console.log(`skip  ${binary.name}: not built: ${outcome.detail}`);
          continue;
        }
      } else if (!existsSync(binary.path)) {
        tally.skipped++;
        console.log(`skip  ${binary.name}: no ${where} (npm run build:bin)`);
        continue;
      }
      await testBinary(binary, how);
      await stopAll();
    }
  } finally {
    await stopAll();
    rmSync(folder, { recursive: true, force: true });
  }
  console.log(`test-bin: ${tally.passed} passed, ${tally.failed} failed, ${tally.skipped} skipped`);
  return tally.failed === 0 ? 0 : 1;
}

process.exitCode = await main();
