import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Client, type CloseReason, connect, encodeFrame, serve, type Server } from "../mod.ts";
import { loadTransport } from "../src/transport/detect.ts";
import type { Connection, Listener } from "../src/transport/types.ts";
import { sleep, until, within } from "./_async.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";

const HOST = "127.0.0.1";
const servers: Server[] = [];
const clients: Client[] = [];
const raws: Connection[] = [];
const listeners: Listener[] = [];

after(async () => {
  for (const client of clients) client.abort();
  for (const raw of raws) raw.abort();
  for (const listener of listeners) await listener.close();
  await Promise.all(servers.map((server) => server.close({ drainTimeout: 100 })));
});

async function echoServer(options: Parameters<typeof serve>[0] = {}): Promise<{ server: Server; closes: CloseReason[] }> {
  const closes: CloseReason[] = [];
  const server = await serve({
    host: HOST,
    port: 0,
    logger: { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} },
    onSessionClose: (_session, reason) => closes.push(reason),
    ...options,
  });
  server.fallback((request) => {
    request.reply(request.body);
  });
  servers.push(server);
  return { server, closes };
}

async function rawConnection(port: number): Promise<RawPeer> {
  const peer = await rawPeer(port);
  raws.push(peer.conn);
  return peer;
}

describe("limits", () => {
  it("closes a new connection past maxConnections at once with connection-limit, leaving the others open", async () => {
    const { server, closes } = await echoServer({ maxConnections: 2 });
    const a = await connect({ host: HOST, port: server.address.port });
    const b = await connect({ host: HOST, port: server.address.port });
    clients.push(a, b);
    await until(() => server.sessions.size === 2, 5000, "two sessions");
    const third = await rawConnection(server.address.port);
    await within(third.closed, 5000, "the third connection to be closed");
    await until(() => closes.length === 1, 5000, "the close report");
    assert.deepEqual(closes, ["connection-limit"]);
    assert.equal(text(await a.request(1, "a")), "a");
    assert.equal(text(await b.request(1, "b")), "b");
  });

  it("closes a slow-drip peer with frame-timeout", async () => {
    const { server, closes } = await echoServer({ frameTimeout: 200 });
    const { conn, closed } = await rawConnection(server.address.port);
    const wire = encodeFrame(1, new Uint8Array(10));
    conn.write(wire.subarray(0, 5));
    await sleep(100);
    conn.write(wire.subarray(5, 8));
    await within(closed, 5000, "frame-timeout close");
    await until(() => closes.length === 1, 5000, "the close report");
    assert.deepEqual(closes, ["frame-timeout"]);
  });

  it("closes a silent session with idle-timeout and keeps an active one", async () => {
    // The active client ticks every ~100 ms against a 600 ms idle timeout: margin for a loaded machine.
    const { server, closes } = await echoServer({ idleTimeout: 600 });
    const silent = await rawConnection(server.address.port);
    const active = await connect({ host: HOST, port: server.address.port });
    clients.push(active);
    for (let i = 0; i < 10; i++) {
      await active.request(1, "tick");
      await sleep(100);
    }
    await within(silent.closed, 5000, "idle close");
    await until(() => closes.length === 1, 5000, "the close report");
    assert.deepEqual(closes, ["idle-timeout"]);
    assert.equal(active.isClosed, false);
  });
});

describe("client keepalive", () => {
  it("pings an idle server, swallows the pongs, and keeps the session alive past the server's idle timeout", async () => {
    // Pings every 100 ms against a 600 ms idle timeout, watched for over twice that timeout.
    const { server, closes } = await echoServer({ idleTimeout: 600 });
    const seen: number[] = [];
    const c = await connect({ host: HOST, port: server.address.port, keepAlive: { id: 65534, interval: 100 }, onFrame: (f) => seen.push(f.id) });
    clients.push(c);
    await sleep(1300);
    assert.equal(c.isClosed, false);
    assert.deepEqual(closes, []);
    const session = [...server.sessions.values()][0]!;
    assert.ok(session.counters.framesIn >= 4, `pings received: ${session.counters.framesIn}`);
    assert.equal(text(await c.request(7, "still matched")), "still matched");
    assert.deepEqual(seen, [], "pongs never reach onFrame");
  });

  it("closes with idle-timeout when the server stops answering", async () => {
    const accepted: Connection[] = [];
    const listener = await (await loadTransport()).listen({ host: HOST, port: 0 }, (conn) => {
      accepted.push(conn);
      raws.push(conn);
      conn.start({ onData: () => {}, onEnd: () => {}, onDrain: () => {}, onClose: () => {} });
    });
    listeners.push(listener);
    const c = await connect({ host: HOST, port: listener.address.port, keepAlive: { id: 9, interval: 50 } });
    clients.push(c);
    const { reason } = await within(c.closed, 5000, "dead-server detection");
    assert.equal(reason, "idle-timeout");
  });

  it("rejects bad keepalive options naming them", async () => {
    await assert.rejects(connect({ port: 1, keepAlive: { id: 70000, interval: 10 } }), /Invalid option "keepAlive.id"/);
    await assert.rejects(connect({ port: 1, keepAlive: { id: 1, interval: 0 } }), /Invalid option "keepAlive.interval"/);
    await assert.rejects(connect({ port: 1, keepAlive: { id: 1, interval: 10, timeout: 5 } }), /Invalid option "keepAlive.timeout"/);
  });
});

function text(frame: { body: Uint8Array }): string {
  return new TextDecoder().decode(frame.body);
}
