import assert from "node:assert/strict";
import * as net from "node:net";
import process from "node:process";
import { describe, it } from "node:test";
import { nodeInternals, PUBLIC_API_ENV } from "../src/transport/_node_internals.ts";
import { detectRuntime, loadTransport } from "../src/transport/detect.ts";
import type { Connection } from "../src/transport/types.ts";
import { deferred, sleep, until, within } from "./_async.ts";
import { pattern } from "./_bytes.ts";
import { ROOT, runToEnd } from "./_processes.ts";
import { type CodedError, HOST, Recorder, TransportHarness } from "./_transport_harness.ts";

/**
 * Whether the Node adapter must keep to Node's public API here: not on Node
 * itself, or told to (the environment, `--pending-deprecation`).
 */
const PUBLIC_API_ONLY = detectRuntime() !== "node" || process.env[PUBLIC_API_ENV] === "1" ||
  `${process.execArgv.join(" ")} ${process.env.NODE_OPTIONS ?? ""}`.includes("--pending-deprecation");

/** Have `count` see every call of method `name` of `prototype` (own or inherited) until the returned function restores it. */
function countCalls<T>(prototype: T, name: string, count: (self: T, args: unknown[]) => void): () => void {
  const target = prototype as Record<string, unknown>;
  const own = Object.getOwnPropertyDescriptor(target, name);
  const original = target[name] as (...args: unknown[]) => unknown;
  target[name] = function (this: T, ...args: unknown[]): unknown {
    count(this, args);
    return original.apply(this, args);
  };
  return () => {
    if (own !== undefined) Object.defineProperty(target, name, own);
    else delete target[name];
  };
}

/** Whether accepted connections read into memory they reuse: on Node, only through its internals (`data` events bring fresh memory). */
const READS_REUSE_MEMORY = detectRuntime() !== "node" || nodeInternals() !== undefined;

/** Write `data` in 4 KiB pieces, pausing 1 ms every 32 KiB, so that it arrives in many chunks. */
async function trickle(client: Connection, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length; offset += 4096) {
    client.write(data.slice(offset, offset + 4096));
    if (offset % (32 * 1024) === 0) await sleep(1);
  }
}

/** Send `data` in small writes, pausing now and then, so that it arrives in small chunks. */
async function trickleSmall(client: Connection, data: Uint8Array, piece = 256): Promise<void> {
  for (let offset = 0; offset < data.length; offset += piece) {
    client.write(data.slice(offset, offset + piece));
    if ((offset / piece) % 8 === 7) await sleep(1);
  }
}

describe(`transport adapter for ${detectRuntime()}`, () => {
  const harness = TransportHarness.forSuite(() => loadTransport());

  it("reports its runtime and binds the real port when asked for port 0", () => {
    assert.equal(harness.transport.runtime, detectRuntime());
    assert.equal(harness.listener.address.host, HOST);
    assert.ok(harness.listener.address.port > 0);
  });

  it("carries bytes both ways and reports addresses", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    assert.equal(client.remote.port, harness.listener.address.port);
    assert.equal(server.remote.port, client.local.port);
    assert.equal(server.remote.host, HOST);
    client.write(new TextEncoder().encode("ping"));
    await until(() => serverRec.bytes === 4, 5000, "server to receive ping");
    server.write(new TextEncoder().encode("pong!"));
    await until(() => clientRec.bytes === 5, 5000, "client to receive pong");
    assert.equal(new TextDecoder().decode(clientRec.joined()), "pong!");
    client.abort();
    // The peer's close arrives as end (FIN); this side stays open until it ends too.
    await within(serverRec.gotEnd.promise, 5000, "server side to see end");
    assert.equal(serverRec.closes, 0);
    server.end();
    await within(serverRec.closed.promise, 5000, "server side to close");
  });

  it("delivers 8 MiB written at once to a slow reader intact, signalling backpressure and drain", async () => {
    const { client, server, serverRec } = await harness.pair();
    server.pause();
    const data = pattern(8 * 1024 * 1024, 7);
    // Writes are handed over in pieces so that the adapter's own backlog shows.
    let sawFalse = false;
    for (let offset = 0; offset < data.length; offset += 1024 * 1024) {
      if (!client.write(data.slice(offset, offset + 1024 * 1024))) sawFalse = true;
    }
    assert.ok(sawFalse, "write returned false while the peer was not reading");
    assert.ok(client.backlog > 0, "the adapter reports a backlog");
    await sleep(50);
    server.resume();
    await until(() => serverRec.bytes === data.length, 20000, "all 8 MiB to arrive");
    assert.deepEqual(serverRec.joined(), data);
    client.abort();
    server.abort();
    await within(serverRec.closed.promise, 5000, "close");
  });

  it("carries 24 MiB each way when both ends write at once, more than the kernel buffers hold (no deadlock)", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    const up = pattern(24 * 1024 * 1024, 3);
    const down = pattern(24 * 1024 * 1024, 5);
    client.write(up);
    server.write(down);
    await until(() => serverRec.bytes === up.length && clientRec.bytes === down.length, 30000, "24 MiB each way");
    assert.deepEqual(serverRec.joined(), up);
    assert.deepEqual(clientRec.joined(), down);
    client.abort();
    server.abort();
  });

  it("never reuses a received chunk: chunks kept without copying still hold what arrived", async () => {
    const { client, server, serverRec } = await harness.pair();
    const data = pattern(2 * 1024 * 1024, 11);
    for (let offset = 0; offset < data.length; offset += 4096) client.write(data.slice(offset, offset + 4096));
    await until(() => serverRec.bytes === data.length, 20000, "all bytes");
    assert.ok(serverRec.chunks.length > 1, "arrived in several chunks");
    assert.deepEqual(serverRec.joined(), data);
    server.abort();
    client.abort();
  });

  // Chunks of many 4 KiB writes, and small ones: Node's and Deno's adapters
  // read into memory they reuse, and Bun's copies every chunk but the largest
  // (see its module doc) into memory it reuses.
  for (const feed of [
    { label: "", send: trickle, scale: 8 },
    { label: " (small chunks)", send: trickleSmall, scale: 1 },
  ]) {
    it(`may read into a chunk's memory again once onData returns true, delivering every byte intact${feed.label}`, async () => {
      const { client, server, serverRec } = await harness.pair();
      serverRec.copyAndRelease = true;
      const data = pattern(feed.scale * 256 * 1024, 13);
      await feed.send(client, data);
      await until(() => serverRec.bytes === data.length, 20000, "all bytes");
      assert.deepEqual(serverRec.joined(), data);
      assert.equal(serverRec.reusedChunks > 0, READS_REUSE_MEMORY, "the same memory was read into again");
      server.abort();
      client.abort();
    });

    it(`never reads into a chunk kept while it waits in the backlog, sending what was written from it intact${feed.label}`, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      serverRec.echoVia = server;
      const data = pattern(feed.scale * 512 * 1024, 19);
      await feed.send(client, data);
      await until(() => serverRec.bytes === data.length && clientRec.bytes === data.length, 30000, "all bytes both ways");
      assert.deepEqual(serverRec.joined(), data);
      assert.deepEqual(clientRec.joined(), data, "each chunk written back from its own memory arrived intact");
      server.abort();
      client.abort();
    });

    it(`never overwrites a chunk that onData kept, even between chunks it handed back${feed.label}`, async () => {
      const { client, server, serverRec } = await harness.pair();
      serverRec.copyAndRelease = true;
      serverRec.keepEvery = 3;
      const data = pattern(feed.scale * 256 * 1024, 17);
      await feed.send(client, data);
      await until(() => serverRec.bytes === data.length, 20000, "all bytes");
      assert.ok(serverRec.chunks.length > 6, "arrived in several chunks");
      assert.deepEqual(serverRec.joined(), data);
      server.abort();
      client.abort();
    });
  }

  it("lets go of every written buffer once onDrain fires: reusing them then corrupts nothing", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    server.pause(); // let the backlog build up, so that drains are waited for
    const data = pattern(16 * 1024 * 1024, 31);
    const unsent: Uint8Array[] = [];
    let waits = 0;
    for (let offset = 0; offset < data.length;) {
      const out = data.slice(offset, offset + 64 * 1024);
      offset += out.length;
      unsent.push(out);
      const more = client.write(out);
      if (more && client.backlog > 0) continue; // Node: under its high-water mark
      if (!more) {
        const drains = clientRec.drains;
        server.resume();
        await until(() => clientRec.drains > drains, 20000, "a drain");
        waits++;
      }
      assert.equal(client.backlog, 0);
      for (const buffer of unsent) buffer.fill(0xee); // the adapter promised it no longer needs them
      unsent.length = 0;
    }
    await until(() => serverRec.bytes === data.length, 20000, "all 16 MiB to arrive");
    assert.ok(serverRec.joined().every((byte, i) => byte === data[i]), "every byte as written");
    assert.ok(waits > 0, "some writes waited for a drain");
    client.abort();
    server.abort();
  });

  it("lets go of a written buffer whenever backlog is 0 as write returns: reusing it corrupts nothing", async () => {
    const { client, server, serverRec } = await harness.pair();
    // One buffer, rewritten after every write that left no backlog: a write
    // the OS took whole must not be affected. A slow start makes some writes
    // partial, so both paths are taken.
    server.pause();
    const data = pattern(4 * 1024 * 1024, 23);
    let scratch = new Uint8Array(64 * 1024);
    let reused = 0;
    let kept = 0;
    for (let offset = 0; offset < data.length;) {
      const size = Math.min(1 + ((offset * 7919) % (64 * 1024)), data.length - offset);
      const out = scratch.subarray(0, size);
      out.set(data.subarray(offset, offset + size));
      client.write(out);
      offset += size;
      if (client.backlog === 0) {
        out.fill(0xee); // the adapter promised it no longer needs these bytes
        reused++;
      } else {
        scratch = new Uint8Array(64 * 1024); // the adapter keeps the old one
        kept++;
      }
      if (offset > data.length / 4) server.resume();
      if (kept > 0 && client.backlog > 256 * 1024) await sleep(1);
    }
    await until(() => serverRec.bytes === data.length, 20000, "all 4 MiB to arrive");
    assert.deepEqual(serverRec.joined(), data);
    assert.ok(kept > 0, "some writes left a backlog while the peer did not read");
    // Deno's writes are always asynchronous: its backlog is never 0 at once.
    if (harness.transport.runtime !== "deno") assert.ok(reused > 0, "some writes went out whole");
    client.abort();
    server.abort();
  });

  it("half-closes: the peer sees end, can still reply, then both sides close cleanly", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    client.write(new TextEncoder().encode("last words"));
    client.end();
    await within(serverRec.gotEnd.promise, 5000, "server to see end");
    assert.equal(serverRec.bytes, 10);
    assert.equal(serverRec.closes, 0, "server side still open after the peer's FIN");
    server.write(new TextEncoder().encode("reply after FIN"));
    server.end();
    await within(clientRec.closed.promise, 5000, "client to close");
    await within(serverRec.closed.promise, 5000, "server to close");
    assert.equal(new TextDecoder().decode(clientRec.joined()), "reply after FIN");
    assert.equal(clientRec.ended, true);
    assert.equal(clientRec.closeError, undefined);
    assert.equal(serverRec.closeError, undefined);
  });

  it("closes exactly once and ignores every call and event after close", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    client.abort();
    client.abort();
    await within(clientRec.closed.promise, 5000, "client close");
    assert.equal(clientRec.closeError, undefined, "a local abort is not an error");
    assert.equal(client.write(new Uint8Array(10)), false);
    client.end();
    client.pause();
    client.resume();
    client.setNoDelay(true);
    assert.equal(client.backlog, 0);
    await within(serverRec.gotEnd.promise, 5000, "server to see end");
    server.abort();
    await within(serverRec.closed.promise, 5000, "server close");
    assert.equal(server.write(new Uint8Array(10)), false);
    server.abort();
    await sleep(20);
    assert.equal(clientRec.closes, 1);
    assert.equal(serverRec.closes, 1);
    assert.equal(clientRec.eventsAfterClose + serverRec.eventsAfterClose, 0);
  });

  it("reports a peer that resets mid-stream with one close", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    // Unread data at close makes the kernel answer with a reset.
    client.write(pattern(64 * 1024, 3));
    await until(() => serverRec.bytes > 0, 5000, "data to arrive");
    server.pause();
    client.write(pattern(64 * 1024, 4));
    await sleep(20);
    server.abort();
    // The client may be mid-write; it must close exactly once either way.
    for (let i = 0; i < 50 && clientRec.closes === 0; i++) {
      client.write(pattern(16 * 1024, i));
      await sleep(10);
    }
    await within(clientRec.closed.promise, 5000, "client to close");
    assert.equal(clientRec.closes, 1);
    assert.equal(serverRec.closes, 1);
    // Unless the abort reached the client as a plain FIN first (Bun's abort sends FIN
    // when Bun had already read everything), whether a read or a write met the reset,
    // the close says what happened.
    if (!clientRec.ended) {
      const code = clientRec.closeError?.code;
      assert.ok(code === "ECONNRESET" || code === "EPIPE", `client closed with ${clientRec.closeError?.message ?? "no error"}`);
    }
  });

  it("pauses and resumes reading", async () => {
    const { client, server, serverRec } = await harness.pair();
    server.pause();
    client.write(new Uint8Array(100));
    await sleep(50);
    assert.equal(serverRec.bytes, 0, "nothing delivered while paused");
    server.resume();
    await until(() => serverRec.bytes === 100, 5000, "data after resume");
    client.abort();
  });

  it("delivers data, end and close that arrived before start, in order", async () => {
    let late: Connection | undefined;
    const unstarted = deferred<Connection>();
    const lateListener = await harness.transport.listen({ host: HOST, port: 0 }, (connection) => {
      late = harness.track(connection);
      unstarted.resolve(connection);
    });
    try {
      const { client, clientRec } = await harness.connect(lateListener.address.port);
      client.write(new TextEncoder().encode("early"));
      client.end();
      await within(unstarted.promise, 5000, "accept");
      await sleep(100);
      const rec = new Recorder();
      late!.start(rec);
      await within(rec.gotEnd.promise, 5000, "end after start");
      assert.equal(new TextDecoder().decode(rec.joined()), "early");
      late!.end();
      await within(rec.closed.promise, 5000, "close");
      await within(clientRec.closed.promise, 5000, "client close");
    } finally {
      await lateListener.close();
    }
  });

  it("stops accepting after the listener closes and keeps open connections working", async () => {
    const extra = deferred<Connection>();
    const recorder = new Recorder();
    const second = await harness.transport.listen({ host: HOST, port: 0 }, (connection) => {
      harness.track(connection);
      connection.start(recorder);
      extra.resolve(connection);
    });
    const port = second.address.port;
    const { client, clientRec } = await harness.connect(port);
    const server = await within(extra.promise, 5000, "accept");
    await second.close();
    await assert.rejects(harness.transport.connect({ host: HOST, port }), (error: CodedError) => {
      assert.match(error.message, new RegExp(`Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`));
      assert.equal(error.code, "ECONNREFUSED");
      return true;
    });
    server.write(new TextEncoder().encode("still here"));
    await until(() => clientRec.bytes === 10, 5000, "data on the old connection");
    client.abort();
    server.abort();
    await within(recorder.closed.promise, 5000, "close");
  });

  it("fails to listen on a port in use with EADDRINUSE naming host:port", async () => {
    const port = harness.listener.address.port;
    await assert.rejects(harness.transport.listen({ host: HOST, port }, () => {}), (error: CodedError) => {
      assert.equal(error.code, "EADDRINUSE");
      assert.match(error.message, new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${port}: address already in use`));
      return true;
    });
  });
});

describe(`node:net adapter on ${detectRuntime()}`, () => {
  // Bun and Deno run it too when asked (loadTransport("node")), through their node:net emulations.
  const harness = TransportHarness.forSuite(() => loadTransport("node"));

  it("echoes 1 MiB, handing chunks back, then half-closes both ways", async () => {
    const { client, clientRec, server, serverRec } = await harness.pair();
    serverRec.copyAndRelease = true;
    const data = pattern(1024 * 1024, 19);
    client.write(data);
    client.end();
    await within(serverRec.gotEnd.promise, 20000, "the server to see end");
    assert.deepEqual(serverRec.joined(), data);
    server.write(serverRec.joined());
    server.end();
    await within(clientRec.closed.promise, 20000, "the client to close");
    await within(serverRec.closed.promise, 20000, "the server to close");
    assert.deepEqual(clientRec.joined(), data);
    assert.equal(clientRec.closeError, undefined);
  });

  const path = PUBLIC_API_ONLY
    ? "writes through socket.write and reads accepted sockets through data events, as told or off Node"
    : "reads and writes around socket.write and data events, through Node's internals";
  it(path, async () => {
    assert.equal(nodeInternals() === undefined, PUBLIC_API_ONLY);
    let writes = 0;
    let dataEvents = 0;
    // Only this listener's sockets: the test runner's output may go through a net.Socket too.
    const port = harness.listener.address.port;
    const ours = (socket: net.Socket): boolean => socket.localPort === port || socket.remotePort === port;
    const restoreWrite = countCalls(net.Socket.prototype, "write", (socket) => {
      if (ours(socket)) writes++;
    });
    const restoreEmit = countCalls(net.Socket.prototype, "emit", (socket, args) => {
      if (args[0] === "data" && ours(socket)) dataEvents++;
    });
    try {
      const { client, clientRec, server, serverRec } = await harness.pair();
      client.write(pattern(1000, 3));
      await until(() => serverRec.bytes === 1000, 5000, "the request");
      server.write(pattern(1000, 4));
      await until(() => clientRec.bytes === 1000, 5000, "the reply");
      client.abort();
      server.abort();
    } finally {
      restoreEmit();
      restoreWrite();
    }
    if (PUBLIC_API_ONLY) {
      assert.ok(writes >= 2, `socket.write called ${writes} times, expected one per side`);
      assert.ok(dataEvents >= 1, "the accepted socket emitted no data event");
    } else {
      assert.deepEqual({ writes, dataEvents }, { writes: 0, dataEvents: 0 });
    }
  });
});

describe("Node internals", { skip: detectRuntime() === "node" ? false : "Node only" }, () => {
  /** What `nodeInternals()` says in a fresh Node started with `args` and `env`. */
  async function internalsIn(args: string[], env: Record<string, string>): Promise<{ offered: boolean; stderr: string }> {
    const script = `const m = await import("./src/transport/_node_internals.ts"); ` +
      `console.log(m.nodeInternals() === undefined ? "public" : "internals");`;
    const command = [process.execPath, ...args, "--import", "tsx", "--input-type=module", "-e", script];
    const { [PUBLIC_API_ENV]: _, NODE_OPTIONS: __, ...inherited } = process.env;
    const result = await runToEnd(command, 30_000, { cwd: ROOT, env: { ...inherited, ...env } });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^(public|internals)$/m);
    return { offered: result.stdout.includes("internals"), stderr: result.stderr };
  }

  it("are offered by default, not with TLVKIT_NODE_PUBLIC_API=1, nor under --pending-deprecation (no warning)", async () => {
    const [plain, forced, notForced, pending] = await Promise.all([
      internalsIn([], {}),
      internalsIn([], { [PUBLIC_API_ENV]: "1" }),
      internalsIn([], { [PUBLIC_API_ENV]: "0" }),
      internalsIn(["--pending-deprecation"], {}),
    ]);
    assert.equal(plain.offered, true);
    assert.equal(forced.offered, false);
    assert.equal(notForced.offered, true);
    assert.equal(pending.offered, false);
    assert.doesNotMatch(pending.stderr, /DEP0111|process\.binding/);
  });
});
