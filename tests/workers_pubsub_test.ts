import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createLogger } from "../mod.ts";
import type { BusMessage } from "../src/cluster/bus.ts";
import { WorkerBus, type WorkerLink } from "../src/cluster/worker_bus.ts";
import { type BusPayload, type BusRelay, supervise, type SupervisorIO, type WorkerExit, type WorkerHandle } from "../src/cli/workers.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import { deferred, sleep, until, within } from "./_async.ts";
import { runtimeCommand, runToEnd, start, stopAll } from "./_processes.ts";
import { BROADCAST, PUBLISH, PUSH, type PubSubPeer, pubsubPeer, SUBSCRIBE, WHOAMI } from "./_pubsub_peer.ts";
import { NO_REDIS, redis, stopRedis } from "./_redis_server.ts";

const RUNTIME = detectRuntime();
const CLI = runtimeCommand(RUNTIME, "src/cli.ts");

after(async () => {
  await stopAll();
});

/** A client of a worker, and its session's id. */
interface Member {
  peer: PubSubPeer;
  session: number;
}

/**
 * Open clients on `port` (kept in `peers`) until WHOAMI shows sessions on two
 * workers, each named like `names` (bounded: 40 connections).
 */
async function onTwoWorkers(port: number, names: RegExp, peers: PubSubPeer[]): Promise<[Member, Member]> {
  const first = new Map<string, Member>();
  for (let i = 0; i < 40 && first.size < 2; i++) {
    const peer = await pubsubPeer(port);
    peers.push(peer);
    const { json } = await peer.call(WHOAMI, {});
    assert.match(json.node, names);
    if (!first.has(json.node)) first.set(json.node, { peer, session: json.session });
  }
  assert.equal(first.size, 2, `sessions on two workers within ${peers.length} connections`);
  return [...first.values()] as [Member, Member];
}

/**
 * PUSH `data` on id 5 from `from` to `to`'s session until it is answered ok
 * (the target's worker is known from its first heartbeat, one a second:
 * bounded, 50 tries), then wait for it to arrive.
 */
async function pushUntilAnswered(from: Member, to: Member, data: string): Promise<void> {
  let pushed = false;
  for (let i = 0; i < 50 && !pushed; i++) {
    pushed = (await from.peer.call(PUSH, { session: to.session, id: 5, data })).json.ok === true;
    if (!pushed) await sleep(100);
  }
  assert.ok(pushed, "PUSH to the other worker's session answered ok true");
  await until(() => to.peer.received(5).length === 1, 10_000, "the push to arrive");
}

describe(`serve --workers 2 --pubsub on ${RUNTIME}`, () => {
  it("reaches the sessions of both workers: PUSH across workers, BROADCAST once to each, PUBLISH to the other's subscribers", async () => {
    const child = start([...CLI, "serve", "--port", "0", "--workers", "2", "--pubsub", "--stats-interval", "3600"]);
    const peers: PubSubPeer[] = [];
    try {
      const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 60_000);
      const port = Number(match[1]);
      // Open clients until both workers hold one (bounded).
      const [a, b] = await onTwoWorkers(port, /^worker-\d+$/, peers);
      await pushUntilAnswered(a, b, "psst");
      assert.deepEqual(b.peer.received(5), ["psst"]);

      assert.deepEqual((await a.peer.call(BROADCAST, { id: 9, data: "to all" })).json, { ok: true });
      const others = peers.filter((peer) => peer !== a.peer);
      await until(() => others.every((peer) => peer.received(9).length >= 1), 10_000, "the broadcast to reach every other client");
      // A round trip on each after it arrived, so a duplicate would have arrived too.
      for (const peer of peers) await peer.call(WHOAMI, {});
      assert.deepEqual(others.map((peer) => peer.received(9)), others.map(() => ["to all"]), "once each");
      assert.deepEqual(a.peer.received(9), [], "not to the sender");

      assert.deepEqual((await b.peer.call(SUBSCRIBE, { topic: "news" })).json, { ok: true, topic: "news" });
      assert.deepEqual((await a.peer.call(PUBLISH, { topic: "news", id: 11, data: "extra" })).json, { ok: true });
      await until(() => b.peer.received(11).length === 1, 10_000, "the publish to reach the other worker's subscriber");
      await a.peer.call(WHOAMI, {});
      assert.deepEqual(a.peer.received(11), [], "not to the publisher");
    } finally {
      for (const peer of peers) peer.abort();
      child.kill("SIGTERM");
    }
    const { code } = await within(child.exited, 20_000, "the supervisor to exit");
    assert.equal(code, 0, child.stderr);
    assert.doesNotMatch(child.stderr, /ERROR|internal error/);
    // Each worker's last stats line counts its bus: the sender's worker published, the other delivered.
    const busLines = [...child.stderr.matchAll(/stats .* bus-published=(\d+) bus-delivered=(\d+) bus-dropped=(\d+)$/gm)];
    assert.equal(busLines.length, 2, child.stderr);
    assert.ok(busLines.some((line) => Number(line[1]) >= 3), `a worker published the push, broadcast and publish: ${child.stderr}`);
    assert.ok(busLines.some((line) => Number(line[2]) >= 3), `a worker delivered them: ${child.stderr}`);
    assert.ok(busLines.every((line) => line[3] === "0"), "nothing dropped");
  });
});

describe(`serve --workers 2 --cluster on ${RUNTIME}`, () => {
  it("says in one line, exiting non-zero, when the workers cannot join the cluster", async () => {
    const result = await runToEnd([...CLI, "serve", "--port", "0", "--workers", "2", "--cluster", "redis://127.0.0.1:1"], 60_000);
    assert.notEqual(result.code, 0);
    assert.equal(result.stdout, "");
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `one line: ${result.stderr}`);
    assert.match(lines[0]!, /^tlvkit serve: .*redis:\/\/127\.0\.0\.1:1/);
  });

  it("joins each worker to the Redis cluster as NAME-wN: WHOAMI names them, a PUSH crosses", { skip: NO_REDIS }, async () => {
    const r = await redis();
    const child = start([...CLI, "serve", "--port", "0", "--workers", "2", "--pubsub", "--cluster", r.url, "--node-id", "hub"]);
    const peers: PubSubPeer[] = [];
    try {
      const port = Number((await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 60_000))[1]);
      const [a, b] = await onTwoWorkers(port, /^hub-w\d+$/, peers);
      await pushUntilAnswered(a, b, "over redis");
    } finally {
      for (const peer of peers) peer.abort();
      child.kill("SIGTERM");
    }
    const { code } = await within(child.exited, 20_000, "the supervisor to exit");
    assert.equal(code, 0, child.stderr);
    await stopRedis(r);
  });
});

/** A fake worker that records what the supervisor relays to it. */
interface BusWorker extends WorkerHandle {
  node: number;
  relay: BusRelay;
  got: BusPayload[];
  end(exit: WorkerExit): void;
}

function busLauncher() {
  const started: BusWorker[] = [];
  return {
    kind: "fakes",
    sharing: "by hand",
    bindsFirstPort: true,
    started,
    start(port?: number, node?: number, relay?: BusRelay): WorkerHandle {
      const exited = deferred<WorkerExit>();
      let ended = false;
      const worker: BusWorker = {
        label: String(started.length + 1),
        node: node!,
        relay: relay!,
        got: [],
        ready: Promise.resolve(`127.0.0.1:${port ?? 40000}`),
        exited: exited.promise,
        end(exit) {
          if (ended) return;
          ended = true;
          exited.resolve(exit);
        },
        stop: () => worker.end({ status: 0, text: "stopped" }),
        kill: () => worker.end({ status: 1, text: "was terminated" }),
        deliver: (payload) => {
          if (!ended) worker.got.push(payload);
        },
      };
      started.push(worker);
      return worker;
    },
  };
}

function io(): SupervisorIO & { printed: string[]; signal(): void } {
  let stop: ((why: string) => void) | undefined;
  const result = {
    printed: [] as string[],
    print: (line: string) => result.printed.push(line),
    onStop(onStop: (why: string) => void) {
      stop = onStop;
      return () => {
        stop = undefined;
      };
    },
    signal: () => stop?.("received SIGTERM"),
  };
  return result;
}

describe("the supervisor's relay for the workers' bus", () => {
  it("numbers workers for its whole life, relays publishes to the others and sends to one, and drops those to a gone worker", async () => {
    const launcher = busLauncher();
    const out = io();
    const log: string[] = [];
    const plan = { workers: 3, host: "127.0.0.1", port: 0, drainTimeout: 1000, args: [], logger: createLogger("debug", (line) => log.push(line)) };
    const status = supervise(plan, launcher, out);
    await until(() => out.printed.length === 1, 2000, "the listening line");
    const [w1, w2, w3] = launcher.started as [BusWorker, BusWorker, BusWorker];
    assert.deepEqual([w1.node, w2.node, w3.node], [1, 2, 3]);
    w1.relay(0, "a");
    w2.relay(3, "b");
    w3.relay(0, "c");
    assert.deepEqual([w1.got, w2.got, w3.got], [["c"], ["a", "c"], ["a", "b"]]);

    w2.end({ status: 1, text: "failed: boom" });
    await until(() => launcher.started.length === 4, 5000, "the replacement");
    const w4 = launcher.started[3]!;
    assert.equal(w4.node, 4, "a replacement gets a new number");
    w1.relay(2, "to the dead");
    w1.relay(0, "d");
    assert.deepEqual([w1.got, w2.got, w3.got, w4.got], [["c"], ["a", "c"], ["a", "b", "d"], ["d"]]);
    out.signal();
    assert.equal(await within(status, 5000, "the supervisor to stop"), 0, log.join("\n"));
  });
});

/** Two WorkerBuses joined by a stand-in supervisor. */
function linkedPair(): { links: WorkerLink[]; gone(): void } {
  const receivers: Array<((bytes: Uint8Array) => void) | undefined> = [undefined, undefined];
  const gones: Array<() => void> = [];
  let up = true;
  const links = [0, 1].map((i): WorkerLink => ({
    send: (target, bytes) => {
      if (!up) return false;
      const other = 1 - i;
      if (target === 0 || target === other + 1) receivers[other]?.(bytes.slice());
      return true;
    },
    open: (receive, gone) => {
      receivers[i] = receive;
      gones.push(gone);
    },
    close: () => {
      receivers[i] = undefined;
    },
  }));
  return {
    links,
    gone: () => {
      up = false;
      for (const gone of gones) gone();
    },
  };
}

describe("WorkerBus", () => {
  it("carries messages between workers in order, and returns false before it starts and once the supervisor is gone", async () => {
    const pair = linkedPair();
    const one = new WorkerBus(1, pair.links[0]!);
    const two = new WorkerBus(2, pair.links[1]!);
    const heartbeat: BusMessage = { kind: "heartbeat", origin: 1, node: "worker-1", sessions: 3, interval: 1000 };
    assert.equal(one.publish(heartbeat), false, "not started yet");
    const got: BusMessage[] = [];
    const states: boolean[] = [];
    assert.deepEqual(await one.start({ message: () => {}, state: (up) => states.push(up) }), { node: "worker-1", number: 1 });
    assert.deepEqual(await two.start({ message: (message) => got.push(message), state: () => {} }), { node: "worker-2", number: 2 });
    assert.equal(one.publish(heartbeat), true);
    const body = new Uint8Array([1, 2, 3]);
    assert.equal(one.sendTo(2, { kind: "push", origin: 1, target: 2, session: 2 * 2 ** 32 + 5, id: 7, body, request: 9 }), true);
    assert.equal(one.publish({ kind: "publish", origin: 1, topic: "news", id: 8, body, except: 0 }), true);
    assert.deepEqual(got.map((message) => message.kind), ["heartbeat", "push", "publish"]);
    assert.deepEqual(got[0], heartbeat);
    assert.deepEqual((got[1] as { body: Uint8Array }).body, body);
    pair.gone();
    assert.deepEqual(states, [false]);
    assert.equal(one.publish(heartbeat), false, "supervisor gone");
    await one.close();
    await two.close();
  });
});
