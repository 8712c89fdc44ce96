import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Client, type CloseReason, connect, createLogger, encodeFrame, serve, type Server, type ServerOptions } from "../mod.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import { until, within } from "./_async.ts";
import { escapedErrors, runtimeCommand, start, stopAll } from "./_processes.ts";
import { rawPeer } from "./_raw_peer.ts";

const HOST = "127.0.0.1";
/** What each test opened, undone after the suite in reverse order. */
const cleanups: Array<() => unknown> = [];

after(async () => {
  for (const undo of cleanups.reverse()) await undo();
  await stopAll();
  assert.deepEqual(escapedErrors(), []);
});

async function echoServer(options: ServerOptions = {}): Promise<Server> {
  const server = await serve({ host: HOST, port: 0, logger: createLogger("error"), ...options });
  server.fallback((request) => {
    request.reply(request.body);
  });
  cleanups.push(() => server.close({ drainTimeout: 100 }));
  return server;
}

async function client(server: Server): Promise<Client> {
  const c = await connect({ host: HOST, port: server.address.port });
  cleanups.push(() => c.abort());
  return c;
}

/** Only the reasons that happened. */
function nonZero(closes: Record<CloseReason, number>): Partial<Record<CloseReason, number>> {
  return Object.fromEntries(Object.entries(closes).filter(([, count]) => count > 0));
}

describe("Server.stats", () => {
  it("starts at zero, with every close reason present", async () => {
    const server = await echoServer();
    const stats = server.stats();
    assert.deepEqual({ ...stats, uptime: 0 }, {
      uptime: 0,
      openSessions: 0,
      queuedBytes: 0,
      sessionsOpened: 0,
      connectionsAborted: 0,
      acceptErrors: 0,
      framesIn: 0,
      framesOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      closes: {
        "peer-closed": 0,
        reset: 0,
        "frame-too-large": 0,
        "frame-timeout": 0,
        "idle-timeout": 0,
        "slow-consumer": 0,
        "connection-limit": 0,
        "server-shutdown": 0,
        "closed-by-app": 0,
        error: 0,
      },
      bus: { published: 0, delivered: 0, dropped: 0 },
    });
    assert.ok(stats.uptime >= 0);
  });

  it("counts the frames and bytes of a known exchange while the session is open and after it closes", async () => {
    const server = await echoServer();
    const c = await client(server);
    for (const [id, body] of [[1, "a"], [2, "bb"], [3, "ccc"], [4, ""]] as const) await c.request(id, body);
    // 4 frames, 4-byte headers, 6 body bytes: 22 bytes each way.
    const open = server.stats();
    assert.equal(open.openSessions, 1);
    assert.equal(open.sessionsOpened, 1);
    assert.deepEqual([open.framesIn, open.framesOut, open.bytesIn, open.bytesOut], [4, 4, 22, 22]);
    assert.equal(open.queuedBytes, 0);
    await c.close();
    await until(() => server.sessions.size === 0, 5000, "the session to close");
    const closed = server.stats();
    assert.equal(closed.openSessions, 0);
    assert.equal(closed.sessionsOpened, 1);
    assert.deepEqual([closed.framesIn, closed.framesOut, closed.bytesIn, closed.bytesOut], [4, 4, 22, 22]);
    assert.deepEqual(nonZero(closed.closes), { "peer-closed": 1 });
  });

  it("adds up sessions, open and closed, across the server's life", async () => {
    const server = await echoServer();
    const first = await client(server);
    await first.request(1, "xyz");
    await first.close();
    await until(() => server.sessions.size === 0, 5000, "the first session to close");
    const second = await client(server);
    await second.request(2, "hello");
    const stats = server.stats();
    assert.deepEqual([stats.sessionsOpened, stats.openSessions], [2, 1]);
    assert.deepEqual([stats.framesIn, stats.bytesIn, stats.bytesOut], [2, 4 + 3 + 4 + 5, 4 + 3 + 4 + 5]);
  });

  it("counts closes by reason: closed-by-app, frame-too-large, connection-limit, server-shutdown", async () => {
    const server = await echoServer({ maxBody: 10, maxConnections: 2 });
    server.handle(9, (request) => {
      request.reply("bye");
      request.session.close();
    });
    const byApp = await client(server);
    await byApp.request(9, "");
    await within(byApp.closed, 5000, "the app to close the session");

    const tooLarge = await rawPeer(server.address.port);
    cleanups.push(() => tooLarge.conn.abort());
    tooLarge.conn.write(encodeFrame(1, new Uint8Array(11), { maxBody: 11 }));
    await within(tooLarge.closed, 5000, "frame-too-large to close the session");

    const kept = [await client(server), await client(server)];
    await Promise.all(kept.map((c) => c.request(1, "hi")));
    const refused = await rawPeer(server.address.port);
    cleanups.push(() => refused.conn.abort());
    await within(refused.closed, 5000, "the connection past the limit to close");
    await until(() => server.stats().closes["connection-limit"] === 1, 5000, "the refusal to be counted");

    await server.close({ drainTimeout: 1000 });
    const stats = server.stats();
    assert.deepEqual(nonZero(stats.closes), {
      "closed-by-app": 1,
      "frame-too-large": 1,
      "connection-limit": 1,
      "server-shutdown": 2,
    });
    assert.equal(stats.sessionsOpened, 4, "the refused connection is not a session opened");
    assert.equal(stats.openSessions, 0);
  });
});

describe(`serve --stats-interval on ${detectRuntime()}`, () => {
  it("logs a stats line at the interval and once more when it stops, and none without the option", async () => {
    const child = start([...runtimeCommand(detectRuntime(), "src/cli.ts"), "serve", "--port", "0", "--stats-interval", "0.2"]);
    const port = Number((await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 20_000))[1]);
    const c = await connect({ host: HOST, port });
    cleanups.push(() => c.abort());
    await c.request(7, "abc");
    await c.close();
    await until(() => /INFO +stats open=0 opened=1 queued=0 frames-in=1 frames-out=1 bytes-in=7 bytes-out=7 closes=peer-closed:1 aborted=0 accept-errors=0$/m.test(child.stderr), 10_000, `a stats line (stderr: ${child.stderr})`);
    child.kill("SIGTERM");
    const { code } = await within(child.exited, 10_000, "serve to exit");
    assert.equal(code, 0);
    const lines = child.stderr.split("\n").filter((line) => / stats /.test(line));
    assert.ok(lines.length >= 2, `at least one timed line and the final one: ${child.stderr}`);

    const quiet = start([...runtimeCommand(detectRuntime(), "src/cli.ts"), "serve", "--port", "0"]);
    await quiet.waitFor(/^listening on/m, 20_000);
    quiet.kill("SIGTERM");
    await within(quiet.exited, 10_000, "serve to exit");
    assert.doesNotMatch(quiet.stderr, / stats /);
  });
});
