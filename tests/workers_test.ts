import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { after, describe, it } from "node:test";
import { connect, encodeFrame } from "../mod.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import { until, within } from "./_async.ts";
import { type Child, runToEnd, runtimeCommand, start, stopAll } from "./_processes.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";

const RUNTIME = detectRuntime();
/** Starting worker processes needs these under Deno, on top of --allow-net. */
const CLI = runtimeCommand(RUNTIME, "src/cli.ts", ["--allow-net", "--allow-run", "--allow-env"]);
const text = new TextDecoder();

/** Every worker pid a test saw, killed in `after` should a test fail half-way. */
const seenWorkers = new Set<number>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

after(async () => {
  await stopAll();
  for (const pid of seenWorkers) {
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
});

interface Workers {
  child: Child;
  port: number;
  pids: number[];
}

async function startWorkers(...args: string[]): Promise<Workers> {
  const child = start([...CLI, "serve", "--port", "0", "--workers", "2", ...args]);
  const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 60_000);
  const pids = /2 workers \(pids (\d+), (\d+)\)/.exec(child.stderr);
  assert.ok(pids, `the supervisor names its workers: ${child.stderr}`);
  const workers = { child, port: Number(match[1]), pids: [Number(pids[1]), Number(pids[2])] };
  for (const pid of workers.pids) seenWorkers.add(pid);
  return workers;
}

/** Stop the supervisor with SIGTERM (unless `signalled`); it must exit 0 and leave none of `pids` running. */
async function stopWorkers(child: Child, pids: number[], signalled = false): Promise<void> {
  if (!signalled) child.kill("SIGTERM");
  const { code } = await within(child.exited, 20_000, "the supervisor to exit");
  assert.equal(code, 0, child.stderr);
  await until(() => pids.every((pid) => !alive(pid)), 5000, `workers ${pids.join(", ")} to be gone`);
}

/** The pid of the worker that logged opening a session from local port `port` (needs --log-level debug). */
function workerOf(stderr: string, port: number): number | undefined {
  const match = new RegExp(`worker (\\d+): session \\d+ opened from 127\\.0\\.0\\.1:${port}$`, "m").exec(stderr);
  return match ? Number(match[1]) : undefined;
}

/** Send one echo frame on `peer` and wait for its reply (the `n`th frame received). */
async function echo(peer: RawPeer, n: number): Promise<void> {
  peer.conn.write(encodeFrame(7, new TextEncoder().encode(`ping ${n}`)));
  await until(() => peer.frames().length >= n, 10_000, `echo ${n}`);
  assert.equal(text.decode(peer.frames()[n - 1]!.body), `ping ${n}`);
}

describe(`serve --workers on ${RUNTIME}`, () => {
  it("shares one port between 2 workers, spreads 200 connections over both, and drains on SIGTERM leaving no process", async () => {
    const { child, port, pids } = await startWorkers();
    assert.equal(child.stdout, `listening on 127.0.0.1:${port}\n`, "one listening line");
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const client = await connect({ port });
        try {
          const reply = await client.request(1001, JSON.stringify({ id: batch * 20 + i, data: "hi" }), { timeout: 10_000 });
          assert.equal(reply.id, batch * 20 + i);
        } finally {
          await client.close();
        }
      }));
    }
    await stopWorkers(child, pids);
    assert.equal(child.stdout, `listening on 127.0.0.1:${port}\n`, "nothing more on stdout");
    const served = pids.map((pid) => Number(new RegExp(`worker ${pid}: stopped \\(served (\\d+) session`).exec(child.stderr)?.[1]));
    assert.equal(served[0]! + served[1]!, 200, `each worker reports what it served: ${served.join(" + ")}`);
    assert.ok(served.every((count) => count > 0), `both workers served some: ${served.join(" + ")}`);
  });

  it("replaces a killed worker while the other one's sessions go on", async () => {
    const { child, port, pids } = await startWorkers("--log-level", "debug");
    const peers: RawPeer[] = [];
    try {
      // Enough connections that both workers hold some (bounded).
      for (let i = 0; i < 60 && peers.length < 8; i++) {
        const peer = await rawPeer(port);
        await echo(peer, 1);
        await until(() => workerOf(child.stderr, peer.conn.local.port) !== undefined, 5000, "the session's log line");
        peers.push(peer);
        const owners = new Set(peers.map((p) => workerOf(child.stderr, p.conn.local.port)));
        if (owners.size === 2 && peers.length >= 4) break;
      }
      const [victim, survivor] = pids as [number, number];
      const survivors = peers.filter((peer) => workerOf(child.stderr, peer.conn.local.port) === survivor);
      const victims = peers.filter((peer) => workerOf(child.stderr, peer.conn.local.port) === victim);
      assert.ok(survivors.length > 0 && victims.length > 0, "both workers hold sessions");

      process.kill(victim, "SIGKILL");
      const replaced = await within(
        (async () => {
          await until(() => new RegExp(`listening, replacing worker ${victim}`).test(child.stderr), 30_000, "the replacement");
          return Number(new RegExp(`worker (\\d+) listening, replacing worker ${victim}`).exec(child.stderr)![1]);
        })(),
        31_000,
        "the replacement",
      );
      seenWorkers.add(replaced);
      assert.match(child.stderr, new RegExp(`ERROR +worker ${victim} was killed`));
      await Promise.all(victims.map((peer) => within(peer.closed, 10_000, "the killed worker's sessions to close")));
      await Promise.all(survivors.map((peer) => echo(peer, 2)));

      // New connections reach the replacement too (bounded).
      let reached = false;
      for (let i = 0; i < 200 && !reached; i++) {
        const peer = await rawPeer(port);
        peers.push(peer);
        await echo(peer, 1);
        await until(() => workerOf(child.stderr, peer.conn.local.port) !== undefined, 5000, "the session's log line");
        reached = workerOf(child.stderr, peer.conn.local.port) === replaced;
      }
      assert.ok(reached, "the replacement accepts connections");
    } finally {
      for (const peer of peers) peer.conn.abort();
    }
    await stopWorkers(child, pids);
    assert.equal(child.stdout, `listening on 127.0.0.1:${port}\n`);
  });

  it("closes the sessions of every worker with server-shutdown on SIGTERM", async () => {
    const { child, port, pids } = await startWorkers("--log-level", "debug");
    const peers: RawPeer[] = [];
    try {
      for (let i = 0; i < 10; i++) peers.push(await rawPeer(port));
      for (const peer of peers) await echo(peer, 1);
      child.kill("SIGTERM");
      for (const peer of peers) await within(peer.closed, 15_000, "the server to close the session");
      await until(() => (child.stderr.match(/closed: server-shutdown/g) ?? []).length === 10, 10_000, "10 server-shutdown closes");
    } finally {
      for (const peer of peers) peer.conn.abort();
    }
    await stopWorkers(child, pids, true);
  });

  it("leaves no worker running when the supervisor is killed", async () => {
    const { child, pids } = await startWorkers();
    child.kill("SIGKILL");
    await within(child.exited, 10_000, "the supervisor to die");
    await until(() => pids.every((pid) => !alive(pid)), 15_000, `workers ${pids.join(", ")} to exit on their own`);
  });

  it("runs a single process, with no worker, by default", async () => {
    const child = start([...CLI, "serve", "--port", "0"]);
    await child.waitFor(/^listening on /m, 30_000);
    const pid = child.process.pid!;
    const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean)
    );
    const workers = children.filter((kid) => {
      try {
        return readFileSync(`/proc/${kid}/cmdline`, "utf8").includes("--internal-worker");
      } catch {
        return false;
      }
    });
    assert.deepEqual(workers, []);
    child.kill("SIGTERM");
    assert.equal((await within(child.exited, 10_000, "serve to exit")).code, 0);
  });

  for (const value of ["-1", "1.5", "two", "257"]) {
    it(`rejects --workers=${value} in one line with exit status 2`, async () => {
      const result = await runToEnd([...CLI, "serve", `--workers=${value}`]);
      assert.equal(result.code, 2);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, /^tlvkit serve: --workers must be an integer from 0 to 256, got /);
    });
  }

  it("says in one line that Deno needs --allow-run and --allow-env to start workers", async () => {
    const result = await runToEnd([...runtimeCommand("deno", "src/cli.ts"), "serve", "--port", "0", "--workers", "2"]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      "tlvkit serve: cannot run 2 workers: starting worker processes needs --allow-run and --allow-env under Deno\n",
    );
  });
});
