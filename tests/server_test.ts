import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Client, type CloseReason, connect, encodeFrame, type Frame, FrameLayout, type FrameLayoutOptions, serve, type Server, type ServerOptions } from "../mod.ts";
import { createBundledApp } from "../cli.ts";
import type { Connection } from "../src/transport/types.ts";
import { deferred, sleep, until, within } from "./_async.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";

const HOST = "127.0.0.1";
const utf8 = new TextEncoder();
const text = new TextDecoder();

const servers: Server[] = [];
const clients: Client[] = [];
const raws: Connection[] = [];

after(async () => {
  for (const client of clients) client.abort();
  for (const raw of raws) raw.abort();
  await Promise.all(servers.map((server) => server.close({ drainTimeout: 100 })));
});

async function bundled(options: ServerOptions = {}): Promise<Server> {
  const app = createBundledApp(new FrameLayout(options));
  const server = await serve({ host: HOST, port: 0, router: app.router, onError: app.onError, ...options });
  servers.push(server);
  return server;
}

async function client(server: Server, layout: FrameLayoutOptions = {}): Promise<Client> {
  const c = await connect({ host: HOST, port: server.address.port, ...layout });
  clients.push(c);
  return c;
}

/** A raw peer, closed after the test. */
async function raw(server: Server): Promise<RawPeer> {
  const peer = await rawPeer(server.address.port);
  raws.push(peer.conn);
  return peer;
}

function json(frame: Frame): Record<string, unknown> {
  return JSON.parse(text.decode(frame.body)) as Record<string, unknown>;
}

describe("serve with the bundled application", () => {
  it("echoes any other id with the same id and body, including ids 0 and 65534 and empty bodies", async () => {
    const server = await bundled();
    const c = await client(server);
    for (const [id, body] of [[0, ""], [7, "hello"], [65534, "x".repeat(1000)], [1002, "{}"]] as const) {
      const reply = await within(c.request(id, body), 5000, `echo of ${id}`);
      assert.equal(reply.id, id);
      assert.equal(text.decode(reply.body), body);
    }
  });

  it("answers HELLO with the request's id and the data prefixed, other fields kept in order", async () => {
    const server = await bundled();
    const c = await client(server);
    const reply = await c.request(1001, JSON.stringify({ id: 5, data: "hi", extra: [1, { a: true }], z: null }));
    assert.equal(reply.id, 5);
    assert.equal(text.decode(reply.body), JSON.stringify({
      id: 5,
      data: "server has received msg, msg data is hi",
      extra: [1, { a: true }],
      z: null,
    }));
  });

  it("answers a plain {id, data} HELLO exactly as JSON.stringify would, whatever the data holds", async () => {
    const server = await bundled();
    const c = await client(server);
    const datas = ["", 'quote " backslash \\ slash /', "tab\tnewline\n\u0001", "héllo wörld ✓ 😀", "\u2028\u2029", "lone \ud800 and \udfff surrogates", "\u001f\u007f", "x".repeat(5000)];
    for (const [i, data] of datas.entries()) {
      for (const request of [{ id: i, data }, { data, id: i }]) {
        const reply = await c.request(1001, JSON.stringify(request));
        assert.equal(reply.id, i);
        const expected = Object.fromEntries(Object.entries(request).map(([k, v]) => [k, k === "data" ? `server has received msg, msg data is ${v}` : v]));
        assert.equal(text.decode(reply.body), JSON.stringify(expected), `reply to ${JSON.stringify(request).slice(0, 60)}`);
      }
    }
  });

  it("answers an indented HELLO as the original client writes it (jsoncpp toStyledString) like a compact one", async () => {
    const server = await bundled();
    const c = await client(server);
    // jsoncpp's toStyledString: keys sorted, three-space indent, " : ", a final newline.
    const styled = '{\n   "data" : "hello world",\n   "id" : 1001\n}\n';
    const reply = await c.request(1001, styled);
    assert.equal(reply.id, 1001);
    assert.deepEqual(JSON.parse(text.decode(reply.body)), { data: "server has received msg, msg data is hello world", id: 1001 });
    const tabbed = await c.request(1001, '\t{ "id"\t: 7 ,\r\n "data": "x" }  ');
    assert.equal(tabbed.id, 7);
    assert.equal(text.decode(tabbed.body), '{"id":7,"data":"server has received msg, msg data is x"}');
  });

  it("answers a HELLO whose id is 65535 on frame 65535 without an error field", async () => {
    const server = await bundled();
    const c = await client(server);
    const reply = await c.request(1001, JSON.stringify({ id: 65535, data: "edge", error: "not mine" }));
    assert.equal(reply.id, 65535);
    const body = json(reply);
    assert.equal(body["data"], "server has received msg, msg data is edge");
    assert.equal("error" in body, false);
  });

  const badHellos: Array<[string, Uint8Array]> = [
    ["a body that is not UTF-8", Uint8Array.of(0x7b, 0xff, 0xfe, 0x7d)],
    // Decoded leniently, this would be valid JSON with U+FFFD in "data".
    ["JSON whose data string holds a byte that is not UTF-8", Uint8Array.from([...utf8.encode('{"id": 5, "data": "a'), 0xff, ...utf8.encode('b"}')])],
    ["a body that is not JSON", utf8.encode("{id: 1}")],
    ["a JSON array", utf8.encode("[1, 2]")],
    ["a JSON string", utf8.encode('"hi"')],
    ["a missing id", utf8.encode('{"data": "x"}')],
    ["a fractional id", utf8.encode('{"id": 1.5, "data": "x"}')],
    ["an id over 65535", utf8.encode('{"id": 65536, "data": "x"}')],
    ["a negative id", utf8.encode('{"id": -1, "data": "x"}')],
    ["a string id", utf8.encode('{"id": "5", "data": "x"}')],
    ["a missing data", utf8.encode('{"id": 5}')],
    ["a non-string data", utf8.encode('{"id": 5, "data": 42}')],
    ["an empty body", new Uint8Array(0)],
  ];
  for (const [what, body] of badHellos) {
    it(`answers a HELLO with ${what} with an ERROR frame and keeps the session open`, async () => {
      const server = await bundled();
      const c = await client(server);
      const reply = await c.request(1001, body);
      assert.equal(reply.id, 65535);
      const error = json(reply);
      assert.equal(typeof error["error"], "string");
      assert.ok((error["error"] as string).length > 0);
      assert.equal(error["msgId"], 1001);
      const echo = await c.request(3, "still open");
      assert.equal(text.decode(echo.body), "still open");
    });
  }

  it("answers a HELLO whose reply would exceed maxBody with an ERROR frame", async () => {
    const server = await bundled({ maxBody: 100 });
    const c = await client(server, { maxBody: 100 });
    const request = JSON.stringify({ id: 1, data: "d".repeat(60) });
    assert.ok(request.length <= 100);
    const reply = await c.request(1001, request);
    assert.equal(reply.id, 65535);
    assert.match(json(reply)["error"] as string, /over the limit of 100/);
  });

  it("reassembles frames written one byte at a time", async () => {
    const server = await bundled();
    const r = await raw(server);
    const wire = new Uint8Array([
      ...encodeFrame(7, utf8.encode("split")),
      ...encodeFrame(1001, utf8.encode('{"id":9,"data":"x"}')),
      ...encodeFrame(0, new Uint8Array(0)),
    ]);
    for (const byte of wire) {
      r.conn.write(Uint8Array.of(byte));
      await sleep(1);
    }
    await until(() => r.frames().length === 3, 5000, "three replies");
    const frames = r.frames();
    assert.deepEqual(frames.map((f) => f.id), [7, 9, 0]);
    assert.equal(text.decode(frames[0]!.body), "split");
  });

  it("answers every frame of one coalesced write", async () => {
    const server = await bundled();
    const r = await raw(server);
    const frames = Array.from({ length: 100 }, (_, i) => encodeFrame(i, utf8.encode(`f${i}`)));
    r.conn.write(new Uint8Array(frames.flatMap((f) => [...f])));
    await until(() => r.frames().length === 100, 5000, "100 replies");
    assert.deepEqual(r.frames().map((f) => f.id), Array.from({ length: 100 }, (_, i) => i));
  });

  it("answers 10,000 pipelined frames in order", async () => {
    const server = await bundled();
    const received: Frame[] = [];
    const c = await connect({ host: HOST, port: server.address.port, onFrame: (f) => received.push(f) });
    clients.push(c);
    for (let i = 0; i < 10_000; i++) {
      if (!c.send(1 + (i % 1000), `body ${i}`)) await c.writable();
    }
    await until(() => received.length === 10_000, 30_000, "10,000 replies");
    for (let i = 0; i < 10_000; i++) {
      assert.equal(text.decode(received[i]!.body), `body ${i}`, `reply ${i} in order`);
    }
  });

  it("closes only the session that announces a too-large frame, after replying to the frames before it", async () => {
    const closes: CloseReason[] = [];
    const server = await bundled({ maxBody: 16, onSessionClose: (_s, reason) => closes.push(reason) });
    const bystander = await client(server, { maxBody: 16 });
    const r = await raw(server);
    r.conn.write(new Uint8Array([...encodeFrame(1, utf8.encode("fine")), 0x00, 0x02, 0x00, 17, ...new Uint8Array(17)]));
    await within(r.closed, 5000, "the offending session to close");
    assert.deepEqual(r.frames().map((f) => `${f.id}:${text.decode(f.body)}`), ["1:fine"]);
    await until(() => closes.length === 1, 5000, "close report");
    assert.deepEqual(closes, ["frame-too-large"]);
    const reply = await bystander.request(2, "unaffected");
    assert.equal(text.decode(reply.body), "unaffected");
    const late = await client(server, { maxBody: 16 });
    assert.equal(text.decode((await late.request(3, "new")).body), "new");
  });

  it("delivers every reply after the peer half-closes, then closes with peer-closed", async () => {
    const closes: CloseReason[] = [];
    const server = await bundled({ onSessionClose: (_s, reason) => closes.push(reason) });
    const r = await raw(server);
    for (let i = 0; i < 50; i++) r.conn.write(encodeFrame(i, utf8.encode(`half ${i}`)));
    r.conn.end();
    await within(r.closed, 5000, "close after half-close");
    assert.equal(r.frames().length, 50);
    await until(() => closes.length === 1, 5000, "close report");
    assert.deepEqual(closes, ["peer-closed"]);
  });
});

describe("Server", () => {
  it("routes by id, falls back, and reports open and close with one reason each", async () => {
    const opened: number[] = [];
    const closed: Array<[number, CloseReason]> = [];
    const server = await serve({
      host: HOST,
      port: 0,
      onSessionOpen: (s) => opened.push(s.id),
      onSessionClose: (s, reason) => closed.push([s.id, reason]),
    });
    servers.push(server);
    server.handle(1, (request) => {
      request.reply("one");
    }).fallback((request) => {
      request.reply("other");
    });
    const c = await client(server);
    assert.equal(text.decode((await c.request(1, "")).body), "one");
    assert.equal(text.decode((await c.request(2, "")).body), "other");
    assert.equal(server.sessions.size, 1);
    await c.close();
    await until(() => closed.length === 1, 5000, "close report");
    assert.equal(opened.length, 1);
    assert.deepEqual(closed, [[opened[0]!, "peer-closed"]]);
    assert.equal(server.sessions.size, 0);
  });

  it("keeps replies in request order across async handlers of different speeds", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback(async (request) => {
      await sleep(request.id % 3 === 0 ? 20 : 0);
      request.reply(request.body);
    });
    const received: Frame[] = [];
    const c = await connect({ host: HOST, port: server.address.port, onFrame: (f) => received.push(f) });
    clients.push(c);
    for (let i = 0; i < 60; i++) c.send(i, `${i}`);
    await until(() => received.length === 60, 10_000, "60 replies");
    assert.deepEqual(received.map((f) => f.id), Array.from({ length: 60 }, (_, i) => i));
  });

  it("reports a throwing handler to onError and keeps the session open", async () => {
    const errors: string[] = [];
    const server = await serve({
      host: HOST,
      port: 0,
      logger: { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} },
      onError: (error, context) => {
        errors.push(error.message);
        context.request?.reply("handled", 65535);
      },
    });
    servers.push(server);
    server.handle(1, () => {
      throw new Error("handler bug");
    }).handle(2, (request) => {
      request.reply("fine");
    });
    const c = await client(server);
    const first = await c.request(1, "");
    assert.equal(first.id, 65535);
    assert.equal(text.decode((await c.request(2, "")).body), "fine");
    assert.deepEqual(errors, ["handler bug"]);
  });

  it("pushes to one session by id and broadcasts to all", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback((request) => {
      request.reply("joined");
    });
    const inboxes: string[][] = [[], [], []];
    const cs: Client[] = [];
    for (const inbox of inboxes) {
      const c = await connect({ host: HOST, port: server.address.port, onFrame: (f) => inbox.push(`${f.id}:${text.decode(f.body)}`) });
      clients.push(c);
      cs.push(c);
      c.send(1, "hi");
    }
    await until(() => inboxes.every((inbox) => inbox.length === 1), 5000, "joins");
    const ids = [...server.sessions.keys()];
    assert.equal(await server.push(ids[1]!, 9, "just you"), true);
    assert.equal(await server.push(999_999, 9, "nobody"), false);
    assert.equal(server.broadcast(8, "everyone"), 3);
    await until(() => inboxes.every((inbox) => inbox.length >= 3) || inboxes[1]!.length === 3 && inboxes[0]!.length === 2, 5000, "pushes");
    await until(() => inboxes[0]!.length === 2 && inboxes[1]!.length === 3 && inboxes[2]!.length === 2, 5000, "pushes");
    assert.deepEqual(inboxes[1], ["1:joined", "9:just you", "8:everyone"]);
    assert.deepEqual(inboxes[0], ["1:joined", "8:everyone"]);
  });

  it("closes gracefully: refuses new connections, delivers replies in flight, reports server-shutdown", async () => {
    const closes: CloseReason[] = [];
    const server = await serve({ host: HOST, port: 0, onSessionClose: (_s, reason) => closes.push(reason) });
    server.fallback(async (request) => {
      await sleep(100);
      request.reply(request.body);
    });
    const received: Frame[] = [];
    const c = await connect({ host: HOST, port: server.address.port, onFrame: (f) => received.push(f) });
    clients.push(c);
    for (let i = 0; i < 5; i++) c.send(i, `in flight ${i}`);
    await until(() => server.sessions.size === 1 && [...server.sessions.values()][0]!.counters.framesIn === 5, 5000, "frames received");
    const closing = server.close({ drainTimeout: 5000 });
    await assert.rejects(connect({ host: HOST, port: server.address.port }), /Cannot connect to 127\.0\.0\.1:\d+/);
    await within(closing, 6000, "server close");
    const { reason } = await within(c.closed, 5000, "client to see the close");
    assert.equal(reason, "peer-closed");
    assert.equal(received.length, 5);
    assert.deepEqual(closes, ["server-shutdown"]);
  });

  it("aborts sessions still unflushed at the drain timeout", async () => {
    const server = await serve({ host: HOST, port: 0 });
    const never = deferred();
    server.fallback(() => never.promise);
    const c = await connect({ host: HOST, port: server.address.port });
    clients.push(c);
    c.send(1, "stuck");
    await until(() => server.sessions.size === 1 && [...server.sessions.values()][0]!.counters.framesIn === 1, 5000, "frame received");
    const started = Date.now();
    await within(server.close({ drainTimeout: 200 }), 5000, "close at the deadline");
    assert.ok(Date.now() - started >= 150);
    await within(c.closed, 5000, "client closed");
    never.resolve();
  });

  it("rejects an invalid drainTimeout and keeps serving, so that a later close works", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback((request) => {
      request.reply(request.body);
    });
    const before = await client(server);
    for (const drainTimeout of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(server.close({ drainTimeout }), (error: Error) => {
        assert.ok(error instanceof RangeError);
        assert.equal(error.message, `Invalid option "drainTimeout": ${drainTimeout} is not a non-negative number of milliseconds`);
        return true;
      });
    }
    assert.equal(server.closing, false);
    assert.equal(text.decode((await before.request(1, "still open")).body), "still open");
    const after = await client(server);
    assert.equal(text.decode((await after.request(2, "new connection")).body), "new connection");
    const closing = server.close({ drainTimeout: 1000 });
    assert.equal(server.closing, true);
    await within(closing, 5000, "a valid close after the rejected ones");
    assert.equal(server.sessions.size, 0);
  });

  it("rejects a refused connection with an error naming host:port", async () => {
    const server = await serve({ host: HOST, port: 0 });
    const port = server.address.port;
    await server.close();
    await assert.rejects(connect({ host: HOST, port }), (error: Error & { code?: string }) => {
      assert.match(error.message, new RegExp(`^Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`));
      assert.equal(error.code, "ECONNREFUSED");
      return true;
    });
  });

  it("checks its options and names the bad one", async () => {
    await assert.rejects(serve({ port: 70000 }), /Invalid option "port": 70000/);
    await assert.rejects(serve({ maxBody: 70000 }), /Invalid option "maxBody": 70000/);
    await assert.rejects(serve({ idBytes: 3 as 2 }), /Invalid option "idBytes"/);
    await assert.rejects(serve({ maxConnections: 0 }), /Invalid option "maxConnections"/);
  });
});

describe("Client", () => {
  it("iterates over frames no request claimed and ends when the server closes", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback((request) => {
      request.reply(request.body);
      if (request.id === 3) request.session.close();
    });
    const c = await client(server);
    c.send(1, "a");
    c.send(2, "b");
    c.send(3, "c");
    const seen: number[] = [];
    for await (const frame of c) seen.push(frame.id);
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal((await c.closed).reason, "peer-closed");
  });

  it("rejects pending requests when the connection closes", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback((request) => request.session.close());
    const c = await client(server);
    await assert.rejects(c.request(1, "x"), { name: "ConnectionClosedError" });
    assert.throws(() => c.send(1, "after close"), /Cannot send: connection to 127\.0\.0\.1:\d+ is closed/);
  });

  it("times out a request and keeps later replies matched", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback(async (request) => {
      if (request.id === 1) await sleep(150);
      request.reply(request.body);
    });
    const c = await client(server);
    await assert.rejects(c.request(1, "slow", { timeout: 50 }), { name: "RequestTimeoutError" });
    const reply = await c.request(2, "next");
    assert.equal(reply.id, 2);
  });

  it("send/writable never stall when the queue lands exactly on the high-water mark", async () => {
    // 8,192 frames of 8 bytes fill exactly 64 KiB, the default high-water mark.
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback((request) => {
      request.reply(request.body);
    });
    let received = 0;
    const c = await connect({ host: HOST, port: server.address.port, onFrame: () => received++ });
    clients.push(c);
    for (let i = 0; i < 20_000; i++) {
      if (!c.send(3, "many")) await within(c.writable(), 10_000, `writable after frame ${i}`);
    }
    await until(() => received === 20_000, 20_000, "20,000 replies");
  });

  it("close() waits for replies still in flight", async () => {
    const server = await serve({ host: HOST, port: 0 });
    servers.push(server);
    server.fallback(async (request) => {
      await sleep(50);
      request.reply(request.body);
    });
    const received: Frame[] = [];
    const c = await connect({ host: HOST, port: server.address.port, onFrame: (f) => received.push(f) });
    for (let i = 0; i < 10; i++) c.send(i, "x");
    const { reason } = await c.close();
    assert.equal(reason, "closed-by-app");
    assert.equal(received.length, 10);
  });
});
