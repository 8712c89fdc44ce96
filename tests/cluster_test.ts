import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Client, type CloseReason, connect, type Frame, serve, type Server, type ServerOptions, type Session } from "../mod.ts";
import type { Connection } from "../src/transport/types.ts";
import { until, within } from "./_async.ts";
import { MemoryHub } from "./_memory_hub.ts";
import { SLOW_READER_LIMITS, slowReaderOnAnotherNode } from "./_slow_reader.ts";
import { FakeConnection } from "./_fake_connection.ts";
import { FrameLayout } from "../mod.ts";
import { CLIENT_ROLE, type ResolvedSessionOptions, resolveSessionOptions, type SessionOwner, TransportSession } from "../src/session.ts";

const HOST = "127.0.0.1";
const text = new TextDecoder();

const servers: Server[] = [];
const clients: Client[] = [];
const raws: Connection[] = [];

after(async () => {
  for (const client of clients) client.abort();
  for (const raw of raws) raw.abort();
  await Promise.all(servers.map((server) => server.close({ drainTimeout: 100 })));
});

/** Id 1 subscribes the session to the topic in the body; id 2 answers with the session's id. */
async function node(hub: MemoryHub, name: string, options: ServerOptions = {}): Promise<Server> {
  const server = await serve({
    host: HOST,
    port: 0,
    cluster: { bus: hub.bus(name), heartbeatInterval: 50 },
    ...options,
  });
  servers.push(server);
  server.handle(1, (request) => {
    request.session.subscribe(request.text());
    request.reply("subscribed");
  });
  server.handle(2, (request) => {
    request.reply(String(request.session.id));
  });
  return server;
}

/** A client of `server` that records what is pushed to it. */
async function member(server: Server): Promise<{ client: Client; inbox: string[]; id: number }> {
  const inbox: string[] = [];
  const client = await connect({
    host: HOST,
    port: server.address.port,
    onFrame: (frame: Frame) => inbox.push(`${frame.id}:${text.decode(frame.body)}`),
  });
  clients.push(client);
  const reply = await within(client.request(2, ""), 5000, "session id");
  return { client, inbox, id: Number(text.decode(reply.body)) };
}

async function subscribe(client: Client, topic: string): Promise<void> {
  await within(client.request(1, topic), 5000, `subscribe to ${topic}`);
}

async function allSee(servers: Server[], count: number): Promise<void> {
  await until(() => servers.every((server) => server.cluster.nodes().length === count), 5000, `${count} nodes seen by each`);
}

describe("a cluster of servers on one bus", () => {
  it("gives session ids that say which node holds them, unique across nodes", async () => {
    const hub = new MemoryHub();
    const a = await node(hub, "a");
    const b = await node(hub, "b");
    const ma = await member(a);
    const mb = await member(b);
    assert.notEqual(a.cluster.number, b.cluster.number);
    assert.equal(Math.floor(ma.id / 2 ** 32), a.cluster.number);
    assert.equal(Math.floor(mb.id / 2 ** 32), b.cluster.number);
    assert.notEqual(ma.id, mb.id);
  });

  it("broadcasts to every session of every node exactly once, and leaves out `except`", async () => {
    const hub = new MemoryHub();
    const nodes = [await node(hub, "a"), await node(hub, "b"), await node(hub, "c")];
    await allSee(nodes, 3);
    const members: Array<{ client: Client; inbox: string[]; id: number }> = [];
    for (const server of nodes) members.push(await member(server), await member(server));
    assert.equal(nodes[0]!.broadcast(9, "all", { except: members[3]!.id }), 2);
    await until(() => members.every((m, i) => i === 3 || m.inbox.length === 1), 5000, "broadcast everywhere");
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const [i, m] of members.entries()) assert.deepEqual(m.inbox, i === 3 ? [] : ["9:all"], `member ${i}`);
  });

  it("publishes to the subscribers of a topic on every node, in the order published", async () => {
    const hub = new MemoryHub();
    const a = await node(hub, "a");
    const b = await node(hub, "b");
    await allSee([a, b], 2);
    const here = await member(a);
    const there = await member(b);
    const bystander = await member(b);
    await subscribe(here.client, "room");
    await subscribe(there.client, "room");
    await subscribe(bystander.client, "other");
    for (let i = 0; i < 200; i++) a.publish("room", 7, String(i));
    const expected = Array.from({ length: 200 }, (_, i) => `7:${i}`);
    await until(() => there.inbox.length === 200 && here.inbox.length === 200, 5000, "200 publishes");
    assert.deepEqual(there.inbox, expected);
    assert.deepEqual(here.inbox, expected);
    assert.deepEqual(bystander.inbox, []);
    assert.equal(a.publish("nobody-listens", 7, "x"), 0);
  });

  it("pushes to a session on another node, and resolves false for a session nobody holds", async () => {
    const hub = new MemoryHub();
    const a = await node(hub, "a");
    const b = await node(hub, "b");
    await allSee([a, b], 2);
    const there = await member(b);
    assert.equal(await within(a.push(there.id, 5, "just you"), 5000, "push"), true);
    await until(() => there.inbox.length === 1, 5000, "pushed frame");
    assert.deepEqual(there.inbox, ["5:just you"]);
    // A live node without that session; a node number nobody has.
    assert.equal(await within(a.push(b.cluster.number * 2 ** 32 + 999_999, 5, "x"), 5000, "push to no session"), false);
    assert.equal(await a.push(4000 * 2 ** 32 + 1, 5, "x"), false);
  });

  it("lists the live nodes; a clean shutdown leaves at once, a silent node drops out after three heartbeats", async () => {
    const hub = new MemoryHub();
    const a = await node(hub, "a");
    const b = await node(hub, "b");
    const c = await node(hub, "c");
    await allSee([a, b, c], 3);
    assert.deepEqual(a.cluster.nodes().map((n) => [n.node, n.self]), [["a", true], ["b", false], ["c", false]]);
    await b.close();
    assert.deepEqual(a.cluster.nodes().map((n) => n.node).sort(), ["a", "c"], "b left at once");
    const silent = hub.bus("d");
    const d = await serve({ host: HOST, port: 0, cluster: { bus: silent, heartbeatInterval: 50 } });
    servers.push(d);
    await until(() => a.cluster.nodes().some((n) => n.node === "d"), 5000, "d joined");
    silent.silent = true;
    const since = Date.now();
    await until(() => !a.cluster.nodes().some((n) => n.node === "d"), 5000, "d dropped out");
    assert.ok(Date.now() - since < 1000, `dropped within ${Date.now() - since} ms`);
  });

  it("counts what the bus carried, and drops (never queues) while it is down", async () => {
    const hub = new MemoryHub();
    const logs: string[] = [];
    const logger = { error: (l: string) => logs.push(l), warn: (l: string) => logs.push(l), info: (l: string) => logs.push(l), debug: () => {} };
    const a = await node(hub, "a", { logger });
    const b = await node(hub, "b");
    await allSee([a, b], 2);
    const there = await member(b);
    a.broadcast(3, "one");
    await until(() => there.inbox.length === 1, 5000, "first broadcast");
    hub.setUp(false);
    hub.setUp(false);
    for (let i = 0; i < 5; i++) a.broadcast(3, "lost");
    hub.setUp(true);
    a.broadcast(3, "two");
    await until(() => there.inbox.length === 2, 5000, "second broadcast");
    assert.deepEqual(there.inbox, ["3:one", "3:two"]);
    const stats = a.stats().bus;
    assert.equal(stats.dropped, 5);
    assert.ok(stats.published >= 7, `published ${stats.published}`);
    assert.equal(b.stats().bus.delivered, 2);
    assert.equal(logs.filter((l) => l.includes("lost the bus")).length, 1, logs.join("\n"));
    assert.equal(logs.filter((l) => l.includes("bus connected again")).length, 1, logs.join("\n"));
  });

  it("logs a frame it cannot deliver (a smaller maxBody than the sender's), answers such a push false at once, and serves on", async () => {
    const hub = new MemoryHub();
    const warnings: string[] = [];
    const logger = { error: (l: string) => warnings.push(l), warn: (l: string) => warnings.push(l), info: () => {}, debug: () => {} };
    const a = await node(hub, "a");
    const b = await node(hub, "b", { maxBody: 50, logger });
    await allSee([a, b], 2);
    const there = await member(b);
    a.broadcast(3, "x".repeat(100));
    const started = Date.now();
    assert.equal(await within(a.push(there.id, 3, "y".repeat(100)), 5000, "push"), false);
    assert.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms, not at the push timeout`);
    a.broadcast(3, "small");
    await until(() => there.inbox.length === 1, 5000, "the small broadcast");
    assert.deepEqual(there.inbox, ["3:small"]);
    assert.equal(warnings.filter((l) => l.startsWith("cluster: could not deliver")).length, 1, warnings.join("\n"));
  });

  it("closes a slow reader on another node as a slow consumer, and keeps serving the others", async () => {
    const hub = new MemoryHub();
    const a = await node(hub, "a");
    const closes: CloseReason[] = [];
    const b = await node(hub, "b", { ...SLOW_READER_LIMITS, onSessionClose: (_session: Session, reason: CloseReason) => closes.push(reason) });
    await allSee([a, b], 2);
    await slowReaderOnAnotherNode(a, b, await member(b), closes, raws);
  });
});

describe("topics on one server", () => {
  it("subscribes, lists and unsubscribes; a closed session leaves its topics", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    let seen: Session | undefined;
    server.handle(1, (request) => {
      seen = request.session;
      assert.equal(request.session.subscribe("a"), true);
      assert.equal(request.session.subscribe("a"), false);
      assert.equal(request.session.subscribe("b"), true);
      request.reply([...request.session.topics].join(","));
    });
    const c = await connect({ host: HOST, port: server.address.port });
    clients.push(c);
    assert.equal(text.decode((await within(c.request(1, ""), 5000, "subscribe")).body), "a,b");
    assert.equal(seen!.unsubscribe("a"), true);
    assert.equal(seen!.unsubscribe("a"), false);
    assert.deepEqual([...seen!.topics], ["b"]);
    assert.equal(server.publish("b", 3, "x"), 1);
    c.abort();
    await until(() => seen!.state === "closed", 5000, "closed");
    assert.deepEqual([...seen!.topics], []);
    assert.equal(server.publish("b", 3, "x"), 0);
    assert.equal(seen!.subscribe("c"), false);
  });

  it("refuses too many topics, long names and non-strings with clear errors", async () => {
    const server = await serve({ host: HOST, port: 0, maxTopicsPerSession: 2, maxTopicLength: 8 });
    servers.push(server);
    const errors: string[] = [];
    server.handle(1, (request) => {
      const s = request.session;
      s.subscribe("one");
      s.subscribe("two");
      for (const attempt of [() => s.subscribe("three"), () => s.subscribe("x".repeat(9)), () => s.subscribe(""), () => s.subscribe(5 as unknown as string)]) {
        try {
          attempt();
          errors.push("no error");
        } catch (error) {
          errors.push(`${(error as Error).name}: ${(error as Error).message}`);
        }
      }
      request.reply("");
    });
    const c = await connect({ host: HOST, port: server.address.port });
    clients.push(c);
    await within(c.request(1, ""), 5000, "attempts");
    assert.match(errors[0]!, /^RangeError: .*has 2 topics, the most maxTopicsPerSession allows/);
    assert.match(errors[1]!, /^RangeError: Invalid topic: 9 bytes long, more than maxTopicLength \(8\)/);
    assert.match(errors[2]!, /^TypeError: Invalid topic: an empty string/);
    assert.match(errors[3]!, /^TypeError: Invalid topic: 5/);
    assert.throws(() => server.publish("x".repeat(9), 1, ""), RangeError);
    await assert.rejects(serve({ host: HOST, port: 0, maxTopicsPerSession: 0 }), /maxTopicsPerSession/);
  });

  it("is a server's: a session without a topic registry (a client's) refuses to subscribe", () => {
    const owner: SessionOwner = { dispatch: () => {}, handlerError: () => {}, closed: () => {} };
    const session = new TransportSession(new FakeConnection(), FrameLayout.DEFAULT, resolveSessionOptions({}) as ResolvedSessionOptions, owner, CLIENT_ROLE);
    assert.throws(() => session.subscribe("a"), /topics are a server's/);
    assert.equal(session.unsubscribe("a"), false);
    assert.deepEqual([...session.topics], []);
  });

  it("a server alone is a cluster of one, with a push that resolves at once", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    assert.deepEqual(server.cluster.nodes().map((n) => [n.node, n.number, n.self]), [["local", 0, true]]);
    assert.equal(await server.push(12345, 1, "x"), false);
    server.broadcast(1, "x");
    server.publish("t", 1, "x");
    assert.deepEqual(server.stats().bus, { published: 0, delivered: 0, dropped: 0 });
  });
});
