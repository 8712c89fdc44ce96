import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, describe, it } from "node:test";
import { type Client, type CloseReason, connect, createLogger, type Frame, type Logger, serve, type Server, type ServerOptions } from "../mod.ts";
import type { Connection } from "../src/transport/types.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import type { RuntimeName } from "../src/transport/types.ts";
import { until, within } from "./_async.ts";
import { runtimeCommand, start, stopAll } from "./_processes.ts";
import { freePort, NO_REDIS, type Redis, redis, stopRedis } from "./_redis_server.ts";
import { SLOW_READER_LIMITS, slowReaderOnAnotherNode } from "./_slow_reader.ts";

const HOST = "127.0.0.1";
const RUNTIME = detectRuntime();
const text = new TextDecoder();

if (NO_REDIS) console.log(`redis cluster: skipped: ${NO_REDIS}`);
/** The three-runtime cluster is one check: it runs once per `npm test`, in the Node run. */
const CROSS_RUNTIME_SKIP = NO_REDIS || (RUNTIME === "node" ? false : "the node/deno/bun cluster runs once per npm test, in the Node run");

const servers: Server[] = [];
const clients: Client[] = [];
const raws: Connection[] = [];

after(async () => {
  for (const client of clients) client.abort();
  for (const raw of raws) raw.abort();
  await Promise.all(servers.map((server) => server.close({ drainTimeout: 100 })));
  await stopAll();
});

/**
 * Send one command to Redis over a connection of its own and resolve with the
 * raw reply once it ends with `ending` (ASCII arguments only).
 */
function command(port: number, args: string[], ending: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, HOST);
    let reply = "";
    socket.setEncoding("utf8");
    socket.on("error", reject);
    socket.on("data", (chunk: string) => {
      reply += chunk;
      if (ending.test(reply)) {
        socket.destroy();
        resolve(reply);
      }
    });
    socket.write(`*${args.length}\r\n${args.map((arg) => `$${arg.length}\r\n${arg}\r\n`).join("")}`);
  });
}

/** Subscribers Redis counts on `channel` (PUBSUB NUMSUB). */
async function numsub(port: number, channel: string): Promise<number> {
  const reply = await command(port, ["PUBSUB", "NUMSUB", channel], /:\d+\r\n$/);
  return Number(/:(\d+)\r\n$/.exec(reply)![1]);
}

/** A logger that keeps its lines. */
function keptLog(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger("info", (line) => lines.push(line)), lines };
}

async function node(url: string, name: string, logger: Logger = keptLog().logger, options: ServerOptions = {}): Promise<Server> {
  const server = await serve({ host: HOST, port: 0, cluster: { redis: url, node: name, heartbeatInterval: 100 }, logger, ...options });
  servers.push(server);
  // id 1: subscribe to the topic named by the body; any other id: echo.
  server.handle(1, (request) => {
    request.session.subscribe(request.text());
    request.reply("ok");
  });
  // id 2: unsubscribe from the topic named by the body.
  server.handle(2, (request) => {
    request.reply(String(request.session.unsubscribe(request.text())));
  });
  server.fallback((request) => {
    request.reply(request.body);
  });
  return server;
}

interface Inbox {
  client: Client;
  frames: string[];
}

async function inbox(server: Server): Promise<Inbox> {
  const frames: string[] = [];
  const client = await connect({ host: HOST, port: server.address.port, onFrame: (f: Frame) => frames.push(`${f.id}:${text.decode(f.body)}`) });
  clients.push(client);
  return { client, frames };
}

/** Wait until every server sees `count` live nodes. */
async function joined(nodes: Server[], count = nodes.length): Promise<void> {
  await until(() => nodes.every((server) => server.cluster.nodes().length === count), 10_000, `${count} nodes seen by each`);
}

/** Run `test` against a redis-server of its own; close its nodes and that server after, even when it fails. */
async function withRedis(test: (r: Redis) => Promise<void>, options: { password?: string } = {}): Promise<void> {
  const r = await redis(options);
  try {
    await test(r);
  } finally {
    for (const server of servers.splice(0)) await server.close({ drainTimeout: 100 });
    await stopRedis(r);
  }
}

/** Close `server` and forget it. */
async function closeNode(server: Server): Promise<void> {
  servers.splice(servers.indexOf(server), 1);
  await server.close({ drainTimeout: 100 });
}

function sessionOf(server: Server): number {
  const ids = [...server.sessions.keys()];
  assert.equal(ids.length, 1);
  return ids[0]!;
}

describe("cluster over Redis", { skip: NO_REDIS }, () => {
  it("delivers a broadcast once to every session of every node, and a publish in order to subscribers on other nodes only", async () => {
    await withRedis(async (r) => {
      const [a, b, c] = [await node(r.url, "a"), await node(r.url, "b"), await node(r.url, "c")];
      await joined([a!, b!, c!]);
      const inboxes = [await inbox(a!), await inbox(a!), await inbox(b!), await inbox(b!), await inbox(c!)];
      // The second client on b subscribes; nobody else does.
      assert.equal(text.decode((await inboxes[3]!.client.request(1, "room")).body), "ok");
      await until(() => [a!, b!, c!].every((s) => s.sessions.size === (s === a ? 2 : s === b ? 2 : 1)), 5000, "sessions");

      const before = a!.stats().bus;
      assert.equal(a!.broadcast(8, "everyone"), 2, "the local sessions");
      for (let i = 1; i <= 200; i++) a!.publish("room", 9, String(i));
      // A last broadcast marks the end: a frame that was coming arrived before it.
      a!.broadcast(10, "end");
      await until(() => inboxes.every((box) => box.frames.includes("10:end")), 10_000, "the end marker everywhere");
      for (const box of inboxes) assert.equal(box.frames.filter((f) => f === "8:everyone").length, 1, "one broadcast each");
      const published = inboxes[3]!.frames.filter((f) => f.startsWith("9:"));
      assert.deepEqual(published, Array.from({ length: 200 }, (_, i) => `9:${i + 1}`));
      for (const [i, box] of inboxes.entries()) {
        if (i !== 3) assert.deepEqual(box.frames.filter((f) => f.startsWith("9:")), [], `inbox ${i} is not subscribed`);
      }
      const after = a!.stats().bus;
      assert.equal(after.published - before.published, 202);
      assert.equal(after.dropped - before.dropped, 0);
      // b gets the 200 publishes and both broadcasts; c, which subscribed to nothing, the broadcasts only.
      await until(() => b!.stats().bus.delivered === 202 && c!.stats().bus.delivered === 2, 5000, "delivered counters");
    });
  });

  it("closes a slow reader on another node as a slow consumer, and keeps serving the others", async () => {
    await withRedis(async (r) => {
      const closes: CloseReason[] = [];
      const a = await node(r.url, "a");
      const b = await node(r.url, "b", keptLog().logger, { ...SLOW_READER_LIMITS, onSessionClose: (_s, reason) => closes.push(reason) });
      await joined([a, b]);
      const reader = await inbox(b);
      await until(() => b.sessions.size === 1, 5000, "the reader's session");
      await slowReaderOnAnotherNode(a, b, { inbox: reader.frames }, closes, raws);
    });
  });

  it("stops sending a node a topic's publishes once its last subscriber there left", async () => {
    await withRedis(async (r) => {
      const a = await node(r.url, "a");
      const b = await node(r.url, "b");
      await joined([a, b]);
      const onB = await inbox(b);
      assert.equal(text.decode((await onB.client.request(1, "room")).body), "ok");
      a.publish("room", 9, "one");
      await until(() => onB.frames.includes("9:one"), 5000, "the first publish");
      assert.equal(await numsub(r.port, "tlvkit:topic:room"), 1);
      assert.equal(text.decode((await onB.client.request(2, "room")).body), "true");
      const deadline = Date.now() + 5000;
      while (await numsub(r.port, "tlvkit:topic:room") !== 0) assert.ok(Date.now() < deadline, "b unsubscribed within 5 s");
      const delivered = b.stats().bus.delivered;
      a.publish("room", 9, "two");
      a.broadcast(10, "end");
      await until(() => onB.frames.includes("10:end"), 5000, "the end marker");
      assert.deepEqual(onB.frames.filter((f) => f.startsWith("9:")), ["9:one"]);
      assert.equal(b.stats().bus.delivered, delivered + 1, "the broadcast only: Redis no longer sends b the topic");
    });
  });

  it("pushes to a session on another node, answers false for an unknown one, and lists nodes until they leave", async () => {
    await withRedis(async (r) => {
      const a = await node(r.url, "a");
      const b = await node(r.url, "b");
      const c = await node(r.url, "c");
      await joined([a, b, c]);
      assert.deepEqual(a.cluster.nodes().map((n) => n.node).sort(), ["a", "b", "c"]);
      assert.equal(a.cluster.nodes()[0]!.self, true);
      assert.equal(new Set([a, b, c].map((s) => s.cluster.number)).size, 3, "distinct node numbers");

      const onB = await inbox(b);
      await until(() => b.sessions.size === 1, 5000, "b's session");
      const id = sessionOf(b);
      assert.equal(await a.push(id, 7, "to b"), true);
      await until(() => onB.frames.includes("7:to b"), 5000, "the push");
      assert.equal(await a.push(id + 1000, 7, "nobody"), false, "an unknown session on a live node");
      assert.equal(await a.push(999 * 2 ** 32 + 1, 7, "nobody"), false, "a session on no live node");

      await closeNode(c);
      // Heartbeats every 100 ms would drop it in 300: a leave is seen much sooner than 3 intervals matter here.
      await until(() => a.cluster.nodes().length === 2 && b.cluster.nodes().length === 2, 1000, "c gone from a and b");
      assert.deepEqual(a.cluster.nodes().map((n) => n.node).sort(), ["a", "b"]);
    });
  });

  it("refuses a second node under a name in use, and takes it again once that node closed", async () => {
    await withRedis(async (r) => {
      const a = await node(r.url, "a");
      await assert.rejects(node(r.url, "a"), { message: `Cannot join the cluster: node name "a" is in use by a live node` });
      await closeNode(a);
      const again = await node(r.url, "a");
      assert.ok(again.cluster.number > a.cluster.number, "a new number for every start");
    });
  });

  it("refuses a start once node numbers reach 2^21, claiming no name", async () => {
    await withRedis(async (r) => {
      assert.equal(await command(r.port, ["SET", "tlvkit:node-seq", String(2 ** 21 - 2)], /\r\n$/), "+OK\r\n");
      const last = await node(r.url, "last");
      assert.equal(last.cluster.number, 2 ** 21 - 1);
      await assert.rejects(node(r.url, "over"), {
        message: `Cannot join the cluster at ${r.url}: node number 2097152 from "tlvkit:node-seq" is not below 2097152 (reset that key while no node runs)`,
      });
      assert.equal(await command(r.port, ["EXISTS", "tlvkit:name:over"], /\r\n$/), ":0\r\n");
    });
  });

  it("lets a RedisBus be closed before, after and twice after its start without throwing", async () => {
    const r = await redis();
    try {
      const { RedisBus } = await import("../src/cluster/redis_bus.ts");
      await new RedisBus({ url: r.url, node: "never", prefix: "tlvkit" }).close();
      const bus = new RedisBus({ url: r.url, node: "once", prefix: "tlvkit" });
      const identity = await bus.start({ message: () => {}, state: () => {} });
      assert.equal(identity.node, "once");
      assert.equal(await command(r.port, ["GET", "tlvkit:name:once"], /\r\n[^$]*\r\n$|\$-1\r\n$/), `$${String(identity.number).length}\r\n${identity.number}\r\n`);
      await Promise.all([bus.close(), bus.close()]);
      await bus.close();
      assert.equal(bus.publish({ kind: "leave", origin: identity.number, node: "once" }), false, "closed: nothing sent");
      assert.equal(await command(r.port, ["EXISTS", "tlvkit:name:once"], /\r\n$/), ":0\r\n", "the name is free again");
    } finally {
      await stopRedis(r);
    }
  });

  it("rejects a bad URL, a refused port and a wrong password with one line naming the URL without credentials", async () => {
    const port = await freePort();
    await assert.rejects(serve({ port: 0, cluster: { redis: "http://user:secret@example.com", node: "x" } }), {
      message: `Invalid option "cluster.redis": "http://***@example.com" is not a redis:// or rediss:// URL`,
    });
    await assert.rejects(serve({ port: 0, cluster: { redis: "not a url", node: "x" } }), /^TypeError: Invalid option "cluster\.redis"/);
    await assert.rejects(serve({ port: 0, cluster: { redis: `redis://${HOST}:${port}`, node: "x" } }), {
      message: `Cannot join the cluster at redis://${HOST}:${port}: connection refused (ECONNREFUSED)`,
    });
    await withRedis(async (r) => {
      for (const url of [`redis://:wrong@${HOST}:${r.port}`, `redis://${HOST}:${r.port}`]) {
        const error = await serve({ port: 0, cluster: { redis: url, node: "x" } }).then(() => undefined, (e: Error) => e);
        assert.ok(error instanceof Error, `${url} is refused`);
        assert.match(error.message, new RegExp(`^Cannot join the cluster at redis://127\\.0\\.0\\.1:${r.port}: authentication failed \\((WRONGPASS|NOAUTH)[^\\n]*\\)$`));
        assert.ok(!error.message.includes("wrong"), "no password in the message");
      }
      // The right one joins.
      const ok = await node(`redis://:right@${HOST}:${r.port}`, "x");
      assert.ok(ok.cluster.number > 0);
    }, { password: "right" });
  });

  it("keeps serving each node's own clients while Redis is down, counts drops, and resumes after a restart", async () => {
    let r = await redis();
    const logs = [keptLog(), keptLog()];
    try {
      const a = await node(r.url, "a", logs[0]!.logger);
      const b = await node(r.url, "b", logs[1]!.logger);
      await joined([a, b]);
      const onA = await inbox(a);
      const onB = await inbox(b);
      assert.equal(text.decode((await onB.client.request(1, "room")).body), "ok");
      a.publish("room", 9, "before");
      await until(() => onB.frames.includes("9:before"), 5000, "a publish before the outage");

      await stopRedis(r);
      // Down: publishes are dropped (counted) as soon as the nodes notice.
      let n = 0;
      await until(() => {
        a.publish("room", 9, `down ${n++}`);
        return a.stats().bus.dropped > 0;
      }, 10_000, "a drop while Redis is down");
      const dropped = a.stats().bus.dropped;
      a.publish("room", 9, "dropped");
      assert.equal(a.stats().bus.dropped, dropped + 1);
      // Each node still serves its own clients.
      assert.equal(text.decode((await within(onA.client.request(5, "still here"), 5000, "a's echo")).body), "still here");
      assert.equal(text.decode((await within(onB.client.request(5, "me too"), 5000, "b's echo")).body), "me too");

      r = await redis({ port: r.port });
      // Back: the topic channel was subscribed again; publishes flow again.
      let m = 0;
      await until(() => {
        a.publish("room", 9, `after ${m++}`);
        return onB.frames.some((f) => f.startsWith("9:after"));
      }, 15_000, "a publish after the restart");
      for (const { lines } of logs) {
        assert.equal(lines.filter((l) => l.includes("lost the bus")).length, 1, "one line for the loss");
        await until(() => lines.some((l) => l.includes("bus connected again")), 5000, "one line for the return");
        assert.equal(lines.filter((l) => l.includes("bus connected again")).length, 1);
      }
      // A node that starts now gets a number above the live ones, though Redis restarted empty.
      await until(() => b.cluster.nodes().length === 2, 5000, "b hears a again");
      const c = await node(r.url, "c");
      assert.ok(c.cluster.number > Math.max(a.cluster.number, b.cluster.number), `${c.cluster.number} above ${a.cluster.number} and ${b.cluster.number}`);
      await joined([a, b, c]);
    } finally {
      for (const server of servers.splice(0)) await server.close({ drainTimeout: 100 });
      await stopRedis(r);
    }
  });

  it("joins a node on Node, one on Deno and one on Bun: publish and push cross runtimes", { skip: CROSS_RUNTIME_SKIP }, async () => {
    const r = await redis();
    const runtimes: RuntimeName[] = ["node", "deno", "bun"];
    try {
      const boxes: Inbox[] = [];
      // Clients that subscribe to nothing, for requests that must not meet a publish on their way back.
      const controls: Client[] = [];
      for (const runtime of runtimes) {
        const child = start([...runtimeCommand(runtime, "tests/fixtures/cluster_node.ts", ["--allow-all"]), "--redis", r.url, "--node", runtime]);
        const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 30_000);
        const frames: string[] = [];
        const client = await connect({ host: HOST, port: Number(match[1]), onFrame: (f: Frame) => frames.push(`${f.id}:${text.decode(f.body)}`) });
        clients.push(client);
        boxes.push({ client, frames });
        const control = await connect({ host: HOST, port: Number(match[1]) });
        clients.push(control);
        controls.push(control);
      }
      // What each node's nodes() lists, asked again and again through its control client.
      const seen = controls.map(() => "");
      let asking = true;
      const asked = Promise.all(controls.map(async (control, i) => {
        while (asking) seen[i] = text.decode((await control.request(5, "")).body);
      }));
      asked.catch(() => {}); // awaited at the end; a failure before then is reported by what failed first
      const ids: number[] = [];
      for (const box of boxes) {
        assert.equal(text.decode((await box.client.request(1, "room")).body), "ok");
        ids.push(Number(text.decode((await box.client.request(3, "")).body)));
      }
      // Wait until each node has heard the others: a publish then reaches them all.
      for (const [i, box] of boxes.entries()) {
        let k = 0;
        await until(() => {
          void box.client.send(2, `hello ${i} ${k++}`);
          return boxes.every((other, j) => j === i || other.frames.some((f) => f.startsWith(`20:hello ${i} `)));
        }, 20_000, `${runtimes[i]}'s publish on the other runtimes`);
      }
      for (const i of controls.keys()) {
        await until(() => seen[i] === "bun,deno,node", 10_000, `${runtimes[i]} to see every node (it sees ${seen[i]})`);
      }
      for (const [i, control] of controls.entries()) {
        const target = (i + 1) % boxes.length;
        const reply = await within(control.request(4, String(ids[target])), 10_000, `${runtimes[i]} pushes to ${runtimes[target]}`);
        assert.equal(text.decode(reply.body), "true", `${runtimes[i]} to ${runtimes[target]} (${ids[target]}): ${JSON.stringify(boxes.map((b) => b.frames.slice(-3)))}`);
        await until(() => boxes[target]!.frames.includes(`21:push from ${runtimes[i]}`), 5000, `the push from ${runtimes[i]}`);
      }
      asking = false;
      await asked;
    } finally {
      await stopAll();
      await stopRedis(r).catch(() => {});
    }
  });
});
