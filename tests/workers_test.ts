import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { after, describe, it } from "node:test";
import { connect, createLogger, encodeFrame } from "../mod.ts";
import {
  CRASH_LIMIT,
  supervise,
  type SupervisorIO,
  threadLauncher,
  type WorkerExit,
  type WorkerHandle,
  type WorkerLauncher,
} from "../src/cli/workers.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import { deferred, until, within } from "./_async.ts";
import { type Child, runToEnd, runtimeCommand, start, stopAll } from "./_processes.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";

const RUNTIME = detectRuntime();
/** Under Deno, --allow-net only (docs/protocol.md#command-line): the workers are threads. */
const CLI = runtimeCommand(RUNTIME, "src/cli.ts");
/** What the workers are here: `pids` (processes) or `threads` (Deno). */
const KIND = RUNTIME === "deno" ? "threads" : "pids";
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
  /** The workers' labels: pids, or thread numbers on Deno. */
  pids: number[];
}

/** The child processes of process `pid` (Linux). */
function childrenOf(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean)
  );
}

async function startWorkers(...args: string[]): Promise<Workers> {
  const child = start([...CLI, "serve", "--port", "0", "--workers", "2", ...args]);
  const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 60_000);
  // The supervisor logs before it prints, but standard error is another pipe: it may arrive later.
  const named = new RegExp(`2 workers \\(${KIND} (\\d+), (\\d+)\\)`);
  await until(() => named.test(child.stderr), 5000, "the supervisor to name its workers").catch(() => {});
  const pids = named.exec(child.stderr);
  assert.ok(pids, `the supervisor names its workers: ${child.stderr}`);
  const workers = { child, port: Number(match[1]), pids: [Number(pids[1]), Number(pids[2])] };
  if (KIND === "pids") for (const pid of workers.pids) seenWorkers.add(pid);
  else assert.deepEqual(childrenOf(child.process.pid!), [], "threads, not processes");
  return workers;
}

/** Stop the supervisor with SIGTERM (unless `signalled`); it must exit 0 and leave none of `pids` running. */
async function stopWorkers(child: Child, pids: number[], signalled = false): Promise<void> {
  if (!signalled) child.kill("SIGTERM");
  const { code } = await within(child.exited, 20_000, "the supervisor to exit");
  assert.equal(code, 0, child.stderr);
  // Threads end with their process (which just exited): only processes can linger.
  if (KIND === "pids") await until(() => pids.every((pid) => !alive(pid)), 5000, `workers ${pids.join(", ")} to be gone`);
}

/** The label of the worker that logged opening a session from local port `port` (needs --log-level debug). */
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

  // A thread cannot be killed from outside: on Deno, "supervise" below covers
  // replacement with real threads that die, and with fakes everywhere.
  it("replaces a killed worker while the other one's sessions go on", { skip: KIND === "threads" }, async () => {
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
    if (KIND === "pids") await until(() => pids.every((pid) => !alive(pid)), 15_000, `workers ${pids.join(", ")} to exit on their own`);
  });

  it("runs 2 workers through the npm start launcher (scripts/start.ts) on Node", { skip: RUNTIME !== "node" && "npm start runs Node" }, async () => {
    // node:cluster starts each worker with the launcher again, "serve" already in its arguments.
    const child = start(["node", "--import", "tsx", "scripts/start.ts", "--workers", "2", "--port", "0"]);
    const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 60_000);
    const pids = /2 workers \(pids (\d+), (\d+)\)/.exec(child.stderr);
    assert.ok(pids, child.stderr);
    for (const pid of [pids[1], pids[2]]) seenWorkers.add(Number(pid));
    const peer = await rawPeer(Number(match[1]));
    try {
      await echo(peer, 1);
      await echo(peer, 2);
    } finally {
      peer.conn.abort();
    }
    await stopWorkers(child, [Number(pids[1]), Number(pids[2])]);
  });

  it("runs a single process, with no worker, by default", async () => {
    const child = start([...CLI, "serve", "--port", "0"]);
    await child.waitFor(/^listening on /m, 30_000);
    const workers = childrenOf(child.process.pid!).filter((kid) => {
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

  it("runs 2 workers on Deno with --allow-net only, as threads, and stops on SIGTERM with status 0", async () => {
    const child = start([...runtimeCommand("deno", "src/cli.ts"), "serve", "--workers", "2", "--port", "0"]);
    const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 60_000);
    await until(() => /2 workers \(threads 1, 2\)/.test(child.stderr), 5000, "the supervisor to name its threads");
    const client = await connect({ port: Number(match[1]) });
    try {
      assert.equal((await client.request(7, "ping", { timeout: 10_000 })).id, 7);
    } finally {
      await client.close();
    }
    assert.deepEqual(childrenOf(child.process.pid!), []);
    child.kill("SIGTERM");
    assert.equal((await within(child.exited, 20_000, "the supervisor to exit")).code, 0, child.stderr);
    assert.equal(child.stdout, `listening on 127.0.0.1:${match[1]}\n`);
    assert.doesNotMatch(child.stderr, /ERROR|internal error/);
  });

  it("says in one line when Deno runs without the unstable reusePort (no deno.json)", async () => {
    const command = runtimeCommand("deno", "src/cli.ts");
    command.splice(command.indexOf("run") + 1, 0, "--no-config");
    const result = await runToEnd([...command, "serve", "--port", "0", "--workers", "2"]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      'tlvkit serve: cannot run 2 workers: sharing a port (reusePort) needs --unstable-net (or "unstable": ["net"] in deno.json)\n',
    );
  });

  it("says in one line, without prompting, when Deno lacks --allow-net", async () => {
    const result = await runToEnd([...runtimeCommand("deno", "src/cli.ts", []), "serve", "--port", "0", "--workers", "2"]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(result.stderr.split("\n").length, 2, result.stderr);
    assert.match(result.stderr, /^tlvkit serve: .*--allow-net/);
  });
});

/** A worker the test drives by hand. */
interface FakeWorker extends WorkerHandle {
  port: number | undefined;
  listen(address: string): void;
  end(exit: WorkerExit): void;
  asked: Array<"stop" | "kill">;
}

/** A launcher of {@link FakeWorker}s; each listens at once unless `manual`, and stops when asked unless `stubborn`. */
function fakeLauncher(options: { manual?: boolean; stubborn?: boolean } = {}): WorkerLauncher & { started: FakeWorker[] } {
  const started: FakeWorker[] = [];
  return {
    kind: "fakes",
    sharing: "by hand",
    bindsFirstPort: true,
    started,
    start(port?: number): WorkerHandle {
      const ready = deferred<string>();
      ready.promise.catch(() => {});
      const exited = deferred<WorkerExit>();
      let ended = false;
      const worker: FakeWorker = {
        label: String(started.length + 1),
        port,
        ready: ready.promise,
        exited: exited.promise,
        asked: [],
        listen: (address) => ready.resolve(address),
        end(exit) {
          if (ended) return;
          ended = true;
          ready.reject(new Error(`${exit.text} before listening`));
          exited.resolve(exit);
        },
        stop() {
          worker.asked.push("stop");
          if (!options.stubborn) worker.end({ status: 0, text: "stopped" });
        },
        kill() {
          worker.asked.push("kill");
          worker.end({ status: 1, text: "was terminated" });
        },
      };
      started.push(worker);
      if (!options.manual) queueMicrotask(() => worker.listen(`127.0.0.1:${port ?? 40000}`));
      return worker;
    },
  };
}

/** Supervisor I/O that records printed lines and lets the test send the stop signal. */
function fakeIO(): SupervisorIO & { printed: string[]; signal(): void } {
  let stop: ((why: string) => void) | undefined;
  const io = {
    printed: [] as string[],
    print: (line: string) => io.printed.push(line),
    onStop(onStop: (why: string) => void): () => void {
      stop = onStop;
      return () => {
        stop = undefined;
      };
    },
    signal: () => stop?.("received SIGTERM"),
  };
  return io;
}

function plan(log: string[], drainTimeout = 1000) {
  return { workers: 2, host: "127.0.0.1", port: 0, drainTimeout, args: [], logger: createLogger("debug", (line) => log.push(line)) };
}

describe("supervise", () => {
  it("prints one listening line once every worker listens, the later ones on the first one's port", async () => {
    const log: string[] = [];
    const launcher = fakeLauncher({ manual: true });
    const io = fakeIO();
    const status = supervise(plan(log), launcher, io);
    await until(() => launcher.started.length === 1, 1000, "the first worker");
    launcher.started[0]!.listen("127.0.0.1:41234");
    await until(() => launcher.started.length === 2, 1000, "the second worker");
    assert.equal(launcher.started[1]!.port, 41234);
    assert.deepEqual(io.printed, []);
    launcher.started[1]!.listen("127.0.0.1:41234");
    await until(() => io.printed.length === 1, 1000, "the listening line");
    assert.deepEqual(io.printed, ["listening on 127.0.0.1:41234"]);
    io.signal();
    assert.equal(await status, 0);
    assert.deepEqual(launcher.started.map((worker) => worker.asked), [["stop"], ["stop"]]);
    assert.equal(io.printed.length, 1);
  });

  it("replaces a worker that ends unasked, after a back-off, and keeps the others", async () => {
    const log: string[] = [];
    const launcher = fakeLauncher();
    const io = fakeIO();
    const status = supervise(plan(log), launcher, io);
    await until(() => io.printed.length === 1, 1000, "the listening line");
    launcher.started[0]!.end({ status: 1, text: "failed: boom" });
    await until(() => log.some((line) => / worker 3 listening, replacing worker 1$/.test(line)), 2000, "the replacement");
    assert.ok(log.some((line) => /ERROR +worker 1 failed: boom; starting a new one in 100 ms$/.test(line)), log.join("\n"));
    assert.deepEqual(launcher.started[1]!.asked, []);
    io.signal();
    assert.equal(await status, 0);
    assert.deepEqual(launcher.started.map((worker) => worker.asked), [[], ["stop"], ["stop"]]);
  });

  it(`gives up with status 1 when workers end more than ${CRASH_LIMIT} times in the window`, async () => {
    const log: string[] = [];
    const launcher = fakeLauncher();
    const io = fakeIO();
    const status = supervise(plan(log), launcher, io);
    await until(() => io.printed.length === 1, 1000, "the listening line");
    for (let crash = 1; crash <= CRASH_LIMIT + 1; crash++) {
      // The first worker, then each replacement in turn.
      const worker = launcher.started[crash === 1 ? 0 : launcher.started.length - 1]!;
      worker.end({ status: 1, text: "failed: boom" });
      if (crash <= CRASH_LIMIT) await until(() => launcher.started.length === 2 + crash, 10_000, `replacement ${crash}`);
    }
    assert.equal(await within(status, 5000, "the supervisor to give up"), 1);
    assert.ok(log.some((line) => /workers ended within 30 s: giving up$/.test(line)), log.join("\n"));
    assert.ok(launcher.started.every((worker) => worker.asked.length <= 1));
  });

  it("kills a worker still running past the drain timeout and exits 1", async () => {
    const log: string[] = [];
    const launcher = fakeLauncher({ stubborn: true });
    const io = fakeIO();
    const status = supervise(plan(log, 0), launcher, io);
    await until(() => io.printed.length === 1, 1000, "the listening line");
    io.signal();
    assert.equal(await within(status, 10_000, "the supervisor to exit"), 1);
    assert.deepEqual(launcher.started.map((worker) => worker.asked), [["stop", "kill"], ["stop", "kill"]]);
    assert.ok(log.some((line) => /worker 1 still running after the drain timeout: killing it$/.test(line)));
  });

  it("fails the start with status 1 when a worker ends before listening", async () => {
    const log: string[] = [];
    const launcher = fakeLauncher({ manual: true });
    const io = fakeIO();
    const status = supervise(plan(log), launcher, io);
    await until(() => launcher.started.length === 1, 1000, "the first worker");
    launcher.started[0]!.end({ status: 1, text: "failed: listen on 127.0.0.1:1: address in use" });
    assert.equal(await status, 1);
    assert.deepEqual(io.printed, []);
    assert.ok(log.some((line) => /cannot start the workers: failed: listen on 127\.0\.0\.1:1: address in use before listening$/.test(line)));
  });

  /** A stand-in for the bundled worker: listens at once; worker 1 throws when told to on a BroadcastChannel. */
  const DYING_WORKER = `
    const channel = new BroadcastChannel("tlvkit-workers-test");
    self.addEventListener("message", ({ data }) => {
      if (data.type === "start") {
        if (data.id === 1) channel.onmessage = () => { throw new Error("boom in worker " + data.id); };
        else channel.close();
        self.postMessage({ type: "listening", address: "127.0.0.1:" + (data.port ?? 40001) });
      } else if (data.type === "stop") {
        self.postMessage({ type: "stopped", status: 0 });
        self.close();
      }
    });`;
  const NO_WORKERS = typeof (globalThis as { Worker?: unknown }).Worker !== "function" && "no Web Workers on this runtime";

  it("replaces a worker thread that dies of an uncaught error, then stops the others", { skip: NO_WORKERS }, async () => {
    const log: string[] = [];
    const io = fakeIO();
    const status = supervise(plan(log), threadLauncher([], DYING_WORKER), io);
    await until(() => io.printed.length === 1, 30_000, "the listening line");
    const channel = new BroadcastChannel("tlvkit-workers-test");
    try {
      channel.postMessage("die");
    } finally {
      channel.close();
    }
    await until(() => log.some((line) => / worker 3 listening, replacing worker 1$/.test(line)), 10_000, "the replacement");
    assert.deepEqual(io.printed, ["listening on 127.0.0.1:40001"]);
    assert.ok(log.some((line) => /ERROR +worker 1 failed: .*boom in worker 1; starting a new one in 100 ms$/.test(line)), log.join("\n"));
    io.signal();
    assert.equal(await within(status, 10_000, "the supervisor to stop"), 0, log.join("\n"));
  });

  it("fails the start with status 1 when a worker thread cannot load", { skip: NO_WORKERS }, async () => {
    const log: string[] = [];
    const io = fakeIO();
    const status = supervise(plan(log), threadLauncher([], "throw new Error('cannot load');"), io);
    assert.equal(await within(status, 10_000, "the supervisor to give up"), 1);
    assert.deepEqual(io.printed, []);
    assert.ok(log.some((line) => /cannot start the workers: worker 1 failed: .*cannot load/.test(line)), log.join("\n"));
  });
});
