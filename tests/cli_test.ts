import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import { encodeFrame } from "../mod.ts";
import { detectRuntime, loadTransport } from "../src/transport/detect.ts";
import type { Connection } from "../src/transport/types.ts";
import { sleep, until, within } from "./_async.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";
import type { HostilePattern } from "./_hostile_peers.ts";
import { OrdinaryClients } from "./_ordinary_clients.ts";
import { type Child, escapedErrors, ROOT, runToEnd, runtimeCommand, start, stopAll } from "./_processes.ts";

const RUNTIME = detectRuntime();
// `TLVKIT_CLI=dist/tlvkit-node node --import tsx --test tests/cli_test.ts` runs
// this battery against a single binary (`npm run build:bin`) instead.
const BINARY = process.env["TLVKIT_CLI"];
const CLI = BINARY ? [resolve(ROOT, BINARY)] : runtimeCommand(RUNTIME, "src/cli.ts");
/** The runtime the command line under test runs on. */
const CLI_RUNTIME = BINARY ? /tlvkit-(node|deno|bun)$/.exec(BINARY)?.[1] : RUNTIME;
const utf8 = new TextEncoder();
const text = new TextDecoder();

after(async () => {
  await stopAll();
  assert.deepEqual(escapedErrors(), [], "no child reported an error that escaped every handler");
});

async function startServe(...args: string[]): Promise<{ child: Child; port: number }> {
  const child = start([...CLI, "serve", "--port", "0", ...args]);
  const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 20_000);
  return { child, port: Number(match[1]) };
}

/** Run hostile peers (on Node: see `hostile_peers_test.ts`) against `port` for `ms`; resolves when they are done. */
async function hostilePeers(port: number, pattern: HostilePattern, ms: number): Promise<void> {
  const peers = start([...runtimeCommand("node", "tests/fixtures/hostile_peers.ts"), "--port", String(port), "--pattern", pattern, "--duration", String(ms)]);
  const { code } = await within(peers.exited, ms + 30_000, `hostile peers (${pattern}) to finish`);
  assert.equal(code, 0, `hostile peers: ${peers.stderr}`);
}

function assertOneLineError(result: { code: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0, "non-zero exit");
  const lines = result.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got: ${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
  assert.equal(result.stdout, "");
}

describe(`command line on ${BINARY ?? RUNTIME}`, () => {
  it("prints the version for the program and for each command", async () => {
    for (const args of [["--version"], ["serve", "--version"], ["send", "--version"]]) {
      const result = await runToEnd([...CLI, ...args]);
      assert.equal(result.code, 0);
      assert.match(result.stdout, /^tlvkit \d+\.\d+\.\d+\n$/);
    }
  });

  it("ignores a leading -- before a command's options (deno task start -- --workers 2 passes it on)", async () => {
    for (const command of ["serve", "send"]) {
      const result = await runToEnd([...CLI, command, "--", "--version"]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^tlvkit \d+\.\d+\.\d+\n$/);
    }
  });

  it("prints help for the program and for each command, listing every option", async () => {
    const top = await runToEnd([...CLI, "--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /serve/);
    const serve = await runToEnd([...CLI, "serve", "--help"]);
    assert.equal(serve.code, 0);
    for (const option of ["--host", "--port", "--max-body", "--drain-timeout", "--workers", "--log-level", "--id-bytes", "--length-bytes", "--little-endian"]) {
      assert.ok(serve.stdout.includes(option), `serve --help lists ${option}`);
    }
    const send = await runToEnd([...CLI, "send", "--help"]);
    for (const option of ["--id", "--data", "--json", "--hex", "--count"]) {
      assert.ok(send.stdout.includes(option), `send --help lists ${option}`);
    }
  });

  const badArgs: Array<[string[], RegExp]> = [
    [[], /^tlvkit: missing command/],
    [["launch"], /^tlvkit: unknown command "launch"/],
    [["serve", "--bogus"], /^tlvkit serve: unknown option --bogus/],
    [["serve", "--port", "abc"], /^tlvkit serve: --port must be an integer from 0 to 65535, got "abc"/],
    [["serve", "--port", "70000"], /^tlvkit serve: --port must be an integer from 0 to 65535, got 70000/],
    [["serve", "--port"], /^tlvkit serve: option --port needs a value/],
    [["serve", "--max-body", "65536"], /^tlvkit serve: --max-body 65536 exceeds 65535, the largest a 2-byte length field holds/],
    [["serve", "--max-body", "-1"], /^tlvkit serve: /],
    [["serve", "--log-level", "loud"], /^tlvkit serve: --log-level must be one of error, warn, info, debug, got "loud"/],
    [["serve", "--id-bytes", "3"], /^tlvkit serve: --id-bytes must be one of 0, 1, 2, 4, got "3"/],
    [["serve", "--drain-timeout", "soon"], /^tlvkit serve: --drain-timeout must be a number of seconds/],
    // Nothing is ever below a low-water mark of 0: a paused session would never read again.
    [["serve", "--port", "0", "--low-water-mark", "0"], /^tlvkit serve: --low-water-mark must be an integer from 1 to 2147483648, got 0/],
    [["serve", "--workers", "1.5"], /^tlvkit serve: --workers must be an integer from 0 to 256, got "1.5"/],
    [["serve", "--workers", "-1"], /^tlvkit serve: option --workers needs a value; write --workers=VALUE for one that starts with "-"/],
    [["serve", "extra"], /^tlvkit serve: unexpected argument "extra"/],
    [["send", "--data", "a", "--hex", "00"], /^tlvkit send: use only one of --data, --json, --hex/],
    [["send", "--hex", "xyz"], /^tlvkit send: --hex must be pairs of hex digits/],
    [["send", "--id", "65536"], /^tlvkit send: --id must be an integer from 0 to 65535/],
  ];
  for (const [args, pattern] of badArgs) {
    it(`rejects \`${["tlvkit", ...args].join(" ")}\` with one clear line and a non-zero exit`, async () => {
      assertOneLineError(await runToEnd([...CLI, ...args]), pattern);
    });
  }

  it("reports a port already in use in one line", async () => {
    const { port } = await startServe();
    const result = await runToEnd([...CLI, "serve", "--port", String(port)]);
    assertOneLineError(result, new RegExp(`^tlvkit serve: Cannot listen on 127\\.0\\.0\\.1:${port}: address already in use`));
  });

  it("reports a refused connection in one line", async () => {
    const { child, port } = await startServe();
    child.kill("SIGKILL");
    await child.exited;
    const result = await runToEnd([...CLI, "send", "--port", String(port), "--data", "x"]);
    assertOneLineError(result, new RegExp(`^tlvkit send: Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`));
  });

  it("serves: prints only the listening line on stdout, answers send, logs to stderr", async () => {
    const { child, port } = await startServe();
    const hello = await runToEnd([...CLI, "send", "--port", String(port), "--json", '{"id":5,"data":"hi"}']);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(hello.stdout, 'id=5 length=57 text={"id":5,"data":"server has received msg, msg data is hi"}\n');
    const echo = await runToEnd([...CLI, "send", "--port", String(port), "--id", "7", "--hex", "00ff10", "--count", "2"]);
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout, "id=7 length=3 hex=00ff10\nid=7 length=3 hex=00ff10\n");
    child.kill("SIGTERM");
    const { code } = await within(child.exited, 10_000, "serve to exit");
    assert.equal(code, 0);
    assert.equal(child.stdout, `listening on 127.0.0.1:${port}\n`);
    assert.match(child.stderr, /INFO +tlvkit .* serving on 127\.0\.0\.1:\d+/);
    assert.match(child.stderr, /INFO +stopped/);
    assert.doesNotMatch(child.stderr, /DEBUG/);
  });

  it("speaks another layout when asked (length-only, 4-byte little-endian lengths)", async () => {
    const { child, port } = await startServe("--id-bytes", "0", "--length-bytes", "4", "--little-endian");
    const result = await runToEnd([...CLI, "send", "--port", String(port), "--id-bytes", "0", "--length-bytes", "4", "--little-endian", "--data", "legacy"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "id=0 length=6 text=legacy\n");
    child.kill("SIGTERM");
    await child.exited;
  });

  it("on SIGTERM delivers the reply to every frame it received, closes with server-shutdown and exits 0", async () => {
    const { child, port } = await startServe("--log-level", "debug", "--drain-timeout", "10");
    const peer = await rawPeer(port);
    const conn = peer.conn;
    try {
      // Pipeline frames without reading, so replies are still queued at the signal.
      conn.pause();
      const frame = encodeFrame(7, utf8.encode("x".repeat(200)));
      for (let i = 0; i < 3000; i++) conn.write(frame);
      await sleep(300);
      child.kill("SIGTERM");
      await sleep(100);
      conn.resume();
      await within(peer.closed, 15_000, "the server to close the connection");
      const { code } = await within(child.exited, 15_000, "serve to exit");
      assert.equal(code, 0, child.stderr);
      const frames = peer.frames();
      const close = /session \d+ closed: server-shutdown \[frames in (\d+), out (\d+)\]/.exec(child.stderr);
      assert.ok(close, `a server-shutdown close in the log: ${child.stderr}`);
      assert.equal(Number(close[1]), Number(close[2]), "every frame received was answered");
      assert.equal(frames.length, Number(close[2]), "every reply sent arrived");
      assert.ok(frames.length > 0);
      assert.equal(peer.closeError, undefined, "closed cleanly, not reset");
      assert.ok(frames.every((f) => f.id === 7 && f.body.length === 200));
    } finally {
      conn.abort();
    }
  });

  it("exits at once, non-zero, on a second signal", async () => {
    const { child, port } = await startServe("--drain-timeout", "60");
    const { conn } = await rawPeer(port);
    try {
      conn.pause();
      // Enough replies that they cannot all be flushed to a peer that does not read.
      const frame = encodeFrame(9, new Uint8Array(60_000));
      for (let i = 0; i < 200; i++) conn.write(frame);
      await sleep(500);
      child.kill("SIGTERM");
      await sleep(300);
      assert.equal(child.process.exitCode, null, "still draining after the first signal");
      child.kill("SIGINT");
      const { code } = await within(child.exited, 5000, "exit after the second signal");
      assert.notEqual(code, 0);
    } finally {
      conn.abort();
    }
  });

  it("handles SIGINT even when started with SIGINT ignored", async () => {
    const command = [...CLI, "serve", "--port", "0"].map((part) => `'${part}'`).join(" ");
    const child = start(["trap", "''", "INT;", "exec", command], { shell: true });
    await child.waitFor(/^listening on 127\.0\.0\.1:\d+$/m, 20_000);
    child.kill("SIGINT");
    const { code } = await within(child.exited, 10_000, "exit on SIGINT");
    assert.equal(code, 0, child.stderr);
  });

  it("survives running out of file descriptors while accepting, and serves again once they are free", async () => {
    const command = [...CLI, "serve", "--port", "0"].map((part) => `'${part}'`).join(" ");
    const child = start(["ulimit", "-n", "48;", "exec", command], { shell: true });
    const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 20_000);
    const port = Number(match[1]);
    const flood: Connection[] = [];
    try {
      for (let i = 0; i < 80; i++) {
        try {
          flood.push((await rawPeer(port)).conn);
        } catch {
          // refused or reset while the server is out of descriptors: expected
        }
      }
      await sleep(500);
    } finally {
      for (const conn of flood) conn.abort();
    }
    await sleep(1500);
    const result = await runToEnd([...CLI, "send", "--port", String(port), "--data", "after the flood", "--timeout", "10"]);
    assert.equal(result.code, 0, `served after the flood: ${result.stderr}`);
    assert.equal(child.process.exitCode, null, "still running");
    if (CLI_RUNTIME === "deno") {
      // Deno reports accept failures; Node's libuv and Bun absorb them without telling JavaScript.
      assert.match(child.stderr, /too many open files \(EMFILE\); still accepting/);
    }
    child.kill("SIGTERM");
    assert.equal((await within(child.exited, 10_000, "exit")).code, 0);
  });

  it("exits 0 within the drain timeout on SIGTERM after a storm of connect-and-reset peers, every time", async () => {
    // Three rounds: SIGTERM after a storm; after a storm with stalled peers still
    // connected inside a header; and in the middle of a storm.
    for (const round of ["after", "stalled", "during"] as const) {
      const { child, port } = await startServe("--drain-timeout", "2", "--stats-interval", "3600");
      const ordinary = new OrdinaryClients({ port, workers: 2, roundsPerConnection: 10, timeoutMs: 10_000 });
      ordinary.start("storm");
      const stalled = round === "stalled" ? hostilePeers(port, "stall-header", 4000) : undefined;
      const storm = hostilePeers(port, "reset", 1500);
      if (round === "during") await sleep(1000);
      else await storm;
      await ordinary.stop();
      assert.deepEqual(ordinary.failures, [], `${round}: ordinary clients served during the storm`);
      assert.ok(ordinary.counts().get("storm")!.roundTrips > 0, `${round}: ordinary clients made round trips`);
      child.kill("SIGTERM");
      // The drain timeout, and a margin for a loaded machine.
      const { code } = await within(child.exited, 2000 + 5000, `${round}: serve to exit after SIGTERM`);
      assert.equal(code, 0, `${round}: exit status (stderr: ${child.stderr.slice(-2000)})`);
      assert.match(child.stderr, /stats open=\d+ .* accept-errors=0$/m, `${round}: a stats line with no accept error`);
      assert.doesNotMatch(child.stderr, / ERROR /, `${round}: nothing logged as an error`);
      await Promise.all([storm, stalled]);
    }
  });

  it("closes connections past --max-connections at once and logs it", async () => {
    const { child, port } = await startServe("--max-connections", "1");
    const first = (await rawPeer(port)).conn;
    try {
      await sleep(200);
      const second = await rawPeer(port);
      await within(second.closed, 5000, "the extra connection to be closed");
      await until(() => /connection limit/.test(child.stderr), 5000, "the log line");
      assert.match(child.stderr, /WARN +connection from 127\.0\.0\.1:\d+ closed: 1 sessions open \(connection limit\)/);
    } finally {
      first.abort();
    }
    child.kill("SIGTERM");
    await child.exited;
  });

  it("cuts off a slow-drip peer after --frame-timeout and logs it", async () => {
    const { child, port } = await startServe("--frame-timeout", "0.3");
    const slow = await rawPeer(port);
    slow.conn.write(Uint8Array.of(0, 1, 0, 10, 1, 2));
    await within(slow.closed, 5000, "the slow peer to be closed");
    await until(() => /frame-timeout/.test(child.stderr), 5000, "the log line");
    child.kill("SIGTERM");
    await child.exited;
  });

  it("on SIGTERM while 100 clients pipeline, answers every frame received, refuses new connections and exits 0", async () => {
    const { child, port } = await startServe("--log-level", "debug", "--drain-timeout", "20");
    const transport = await loadTransport();
    const peers: RawPeer[] = [];
    try {
      for (let i = 0; i < 100; i++) peers.push(await rawPeer(port));
      // Every client pipelines without reading, so replies are queued when the signal lands.
      for (const peer of peers) peer.conn.pause();
      const frame = encodeFrame(5, utf8.encode("y".repeat(100)));
      for (let round = 0; round < 50; round++) for (const peer of peers) peer.conn.write(frame);
      await sleep(500);
      child.kill("SIGTERM");
      await sleep(200);
      await assert.rejects(transport.connect({ host: "127.0.0.1", port }), /connection refused/);
      for (const peer of peers) peer.conn.resume();
      await within(Promise.all(peers.map((p) => p.closed)), 20_000, "every client to be closed");
      const { code } = await within(child.exited, 20_000, "serve to exit");
      assert.equal(code, 0, child.stderr);
      // Match each client to its session through the log, then compare counts.
      const sessionByPort = new Map<number, string>();
      for (const m of child.stderr.matchAll(/session (\d+) opened from 127\.0\.0\.1:(\d+)/g)) sessionByPort.set(Number(m[2]), m[1]!);
      const outBySession = new Map<string, [number, number]>();
      for (const m of child.stderr.matchAll(/session (\d+) closed: (\S+) \[frames in (\d+), out (\d+)\]/g)) {
        assert.equal(m[2], "server-shutdown");
        outBySession.set(m[1]!, [Number(m[3]), Number(m[4])]);
      }
      assert.equal(outBySession.size, 100, "one close line per session");
      let total = 0;
      for (const peer of peers) {
        const counts = outBySession.get(sessionByPort.get(peer.conn.local.port)!)!;
        assert.equal(counts[0], counts[1], "every frame received was answered");
        const frames = peer.frames();
        assert.equal(frames.length, counts[1], "every reply sent arrived");
        total += frames.length;
      }
      assert.ok(total > 0);
    } finally {
      for (const peer of peers) peer.conn.abort();
    }
  });

  it("keeps serving, without spinning, after the readers of its output and logs go away", async () => {
    const { child, port } = await startServe("--log-level", "debug");
    child.process.stdout!.destroy();
    child.process.stderr!.destroy();
    // Session logs now hit a closed pipe.
    const first = await runToEnd([...CLI, "send", "--port", String(port), "--data", "log me"]);
    assert.equal(first.code, 0, first.stderr);
    await sleep(300);
    const cpuTicks = (): number => {
      const fields = readFileSync(`/proc/${child.process.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return Number(fields[11]) + Number(fields[12]); // utime + stime
    };
    const before = cpuTicks();
    await sleep(1000);
    const used = cpuTicks() - before;
    assert.ok(used < 30, `an idle server used ${used} CPU ticks in a second after its stdout closed`);
    const result = await runToEnd([...CLI, "send", "--port", String(port), "--data", "still here"]);
    assert.equal(result.code, 0, result.stderr);
    child.kill("SIGTERM");
    assert.equal((await within(child.exited, 10_000, "exit")).code, 0, child.stderr);
  });

  it("prints an IPv6 listening address in brackets and serves on it", async () => {
    const child = start([...CLI, "serve", "--host", "::1", "--port", "0"]);
    const match = await child.waitFor(/^listening on \[::1\]:(\d+)$/m, 20_000);
    const result = await runToEnd([...CLI, "send", "--host", "::1", "--port", match[1]!, "--data", "v6"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "id=0 length=2 text=v6\n");
    child.kill("SIGTERM");
    assert.equal((await within(child.exited, 10_000, "exit")).code, 0);
  });

  it("send exits non-zero, saying how many replies arrived, when the server does not answer", async () => {
    const transport = await loadTransport();
    const silent: Connection[] = [];
    const listener = await transport.listen({ host: "127.0.0.1", port: 0 }, (conn) => {
      silent.push(conn);
      conn.start({ onData: () => {}, onEnd: () => conn.end(), onDrain: () => {}, onClose: () => {} });
    });
    try {
      const result = await runToEnd([...CLI, "send", "--port", String(listener.address.port), "--data", "anyone?", "--count", "2", "--timeout", "0.3"]);
      assertOneLineError(result, /^tlvkit send: 0 of 2 replies arrived; timed out after 0\.3 s$/);
    } finally {
      for (const conn of silent) conn.abort();
      await listener.close();
    }
  });

  it("answers a send of 1,000 frames with --count", async () => {
    const { child, port } = await startServe();
    const result = await runToEnd([...CLI, "send", "--port", String(port), "--id", "3", "--data", "many", "--count", "1000"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim().split("\n").length, 1000);
    const logLines = child.stderr.trim().split("\n");
    assert.equal(logLines.length, 1, `at info, 1,000 frames and a session add no log line: ${child.stderr}`);
    assert.match(logLines[0]!, /INFO +tlvkit .* serving on 127\.0\.0\.1:\d+/);
    child.kill("SIGTERM");
    await child.exited;
  });

  it("send loses no output when its reader is slow, and 20,000 replies never stall it", async () => {
    const { child, port } = await startServe();
    const command = [...CLI, "send", "--port", String(port), "--id", "3", "--data", "many", "--count", "20000"]
      .map((part) => `'${part}'`).join(" ");
    const result = await runToEnd(["sh", "-c", `${command} | (sleep 1; wc -l)`], 60_000);
    assert.equal(result.stdout.trim(), "20000", result.stderr);
    child.kill("SIGTERM");
    await child.exited;
  });

  it("keeps serving while one peer sends a too-large frame", async () => {
    const { child, port } = await startServe("--max-body", "100");
    const bad = await rawPeer(port);
    bad.conn.write(Uint8Array.of(0, 1, 0, 101));
    await within(bad.closed, 10_000, "the offending session to close");
    const result = await runToEnd([...CLI, "send", "--port", String(port), "--data", "ok", "--max-body", "100"]);
    assert.equal(result.code, 0);
    assert.match(child.stderr, /frame-too-large/);
    child.kill("SIGTERM");
    await until(() => child.process.exitCode !== null, 10_000, "exit");
    void text;
  });
});
