import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { detectRuntime } from "../src/transport/detect.ts";
import type { Connection } from "../src/transport/types.ts";
import { deferred, sleep, until, within } from "./_async.ts";
import { concat, pattern } from "./_bytes.ts";
import { assertHandlerErrorCloses, type CodedError, Recorder, TransportHarness } from "./_transport_harness.ts";

const ON_BUN = detectRuntime() === "bun";
/** Why the Bun-only cases are skipped elsewhere; `false` runs them. */
const BUN_ONLY: string | false = ON_BUN ? false : `the Bun adapter needs the Bun global; this is ${detectRuntime()}`;

/** What a connection started with {@link recordChunks} received. */
interface Chunks {
  /** Each chunk as `onData` got it, and a copy made then. */
  arrived: Array<{ chunk: Uint8Array; copy: Uint8Array }>;
  bytes: number;
  /** `onData` keeps the chunk (returns nothing) while set, and returns `true` otherwise. */
  keep: boolean;
}

/** Start `server` with handlers that record every chunk. */
function recordChunks(server: Connection): Chunks {
  const chunks: Chunks = { arrived: [], bytes: 0, keep: true };
  server.start({
    onData(chunk) {
      chunks.arrived.push({ chunk, copy: chunk.slice() });
      chunks.bytes += chunk.length;
      return chunks.keep ? undefined : true;
    },
    onEnd() {},
    onDrain() {},
    onClose() {},
  });
  return chunks;
}

/** Send `size` bytes of pattern `seed` and return the one chunk they arrived in, checking what it held on arrival. */
async function send(client: Connection, chunks: Chunks, size: number, seed: number): Promise<Uint8Array> {
  const total = chunks.bytes + size;
  client.write(pattern(size, seed));
  await until(() => chunks.bytes === total, 5000, `chunk ${seed}`);
  const { chunk, copy } = chunks.arrived.at(-1)!;
  assert.equal(chunk.length, size, `chunk ${seed} arrived in one piece`);
  assert.deepEqual(copy, pattern(size, seed), `chunk ${seed} held what was sent when onData ran`);
  return chunk;
}

/** `a` and `b` lie at the same place in the same memory. */
function sameMemory(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset;
}

describe("Bun transport adapter", () => {
  it("refuses to load where there is no Bun global", { skip: ON_BUN ? "the Bun global is present here" : false }, async () => {
    await assert.rejects(import("../src/transport/bun.ts"), (error: Error) => {
      assert.equal(error.message, "Using the Bun transport in an incompatible environment: the Bun global is missing");
      return true;
    });
  });

  describe("on Bun", () => {
    const harness = TransportHarness.forSuite(
      ON_BUN ? async () => (await import("../src/transport/bun.ts")).bunTransport : undefined,
    );

    it("keeps the untaken tail of a partial write and fires onDrain once it is sent", { skip: BUN_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      server.pause();
      assert.equal(client.write(new Uint8Array(0)), true, "an empty write leaves no backlog");
      assert.equal(client.write(new TextEncoder().encode("hello")), true, "a small write goes straight to the kernel");
      // Fill the kernel buffers: Bun takes part of this and drops the rest, which the adapter keeps.
      const big = pattern(16 * 1024 * 1024, 5);
      assert.equal(client.write(big), false);
      assert.ok(client.backlog > 0 && client.backlog < big.length, `partial write left a backlog (${client.backlog})`);
      await sleep(30);
      assert.equal(clientRec.drains, 0, "no drain while the peer is not reading");
      server.resume();
      await within(clientRec.drained.promise, 10000, "drain");
      assert.equal(client.backlog, 0);
      await until(() => serverRec.bytes === 5 + big.length, 20000, "everything");
      assert.deepEqual(serverRec.joined(), concat([new TextEncoder().encode("hello"), big]));
      assert.equal(clientRec.drains, 1);
      client.abort();
      server.abort();
    });

    it("sends writes of mixed sizes made during a backlog in order, merged or not", { skip: BUN_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      server.pause();
      const parts: Uint8Array[] = [pattern(8 * 1024 * 1024, 1)];
      const sizes = [100, 20 * 1024, ...Array<number>(400).fill(1024), 1024 * 1024, 3, 300 * 1024, 16 * 1024, 7, 70 * 1024];
      sizes.forEach((size, i) => parts.push(pattern(size, i + 2)));
      const results = parts.map((part) => client.write(part));
      assert.equal(results[0], false, "the first big write fills the kernel buffers");
      assert.ok(results.slice(1).every((result) => !result), "every write behind a backlog returns false");
      const expected = concat(parts);
      server.resume();
      await until(() => serverRec.bytes === expected.length, 20000, "everything");
      assert.deepEqual(serverRec.joined(), expected);
      await within(clientRec.drained.promise, 5000, "drain");
      assert.equal(client.backlog, 0);
      client.abort();
      server.abort();
    });

    it("sends FIN only after a large backlog is written", { skip: BUN_ONLY }, async () => {
      const { client, server, serverRec } = await harness.pair();
      server.pause();
      const data = pattern(12 * 1024 * 1024, 9);
      client.write(data);
      client.end();
      assert.equal(client.write(new Uint8Array(1)), false, "writing after end is a no-op");
      await sleep(30);
      server.resume();
      await within(serverRec.gotEnd.promise, 20000, "end");
      assert.equal(serverRec.bytes, data.length);
      assert.deepEqual(serverRec.joined(), data);
      server.end();
      await within(serverRec.closed.promise, 5000, "close");
      assert.equal(serverRec.closeError, undefined);
    });

    it("reports end before close on the side that sent FIN first", { skip: BUN_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      client.end();
      await within(serverRec.gotEnd.promise, 5000, "server end");
      await sleep(20);
      assert.deepEqual(clientRec.phases(), [], "nothing yet on the client: the server side is still open");
      server.write(new TextEncoder().encode("late reply"));
      server.end();
      await within(clientRec.closed.promise, 5000, "client close");
      await within(serverRec.closed.promise, 5000, "server close");
      assert.deepEqual(clientRec.phases(), ["data", "end", "close"]);
      assert.deepEqual(serverRec.phases(), ["end", "close"]);
      assert.equal(new TextDecoder().decode(clientRec.joined()), "late reply");
      assert.equal(clientRec.closeError, undefined);
      assert.equal(serverRec.closeError, undefined);
    });

    it("aborts with FIN, not a reset, when nothing is left unread", { skip: BUN_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      client.abort();
      await within(serverRec.gotEnd.promise, 5000, "server end");
      await within(clientRec.closed.promise, 5000, "client close");
      assert.equal(serverRec.closes, 0);
      assert.equal(clientRec.closeError, undefined);
      server.abort();
      await within(serverRec.closed.promise, 5000, "server close");
      assert.equal(serverRec.closeError, undefined);
    });

    it("runs onClose after abort() returns, never inside it", { skip: BUN_ONLY }, async () => {
      const { client, clientRec, server } = await harness.pair();
      client.abort();
      assert.equal(clientRec.closes, 0, "onClose has not run inside abort()");
      assert.equal(client.write(new Uint8Array(1)), false, "but the connection is already closed");
      assert.equal(client.backlog, 0);
      await within(clientRec.closed.promise, 5000, "client close");
      assert.equal(clientRec.closes, 1);
      server.abort();
    });

    it("closes a reader with ECONNRESET when the peer resets", { skip: BUN_ONLY }, async () => {
      const { client, server, serverRec } = await harness.pair();
      client.pause();
      server.write(pattern(1000, 2));
      await sleep(30);
      // Unread bytes at close make the kernel reset the connection.
      client.abort();
      await within(serverRec.closed.promise, 5000, "server close");
      assert.equal(serverRec.closes, 1);
      assert.equal(serverRec.closeError?.code, "ECONNRESET");
    });

    it("closes the connection with the error a handler throws", { skip: BUN_ONLY }, async () => {
      await assertHandlerErrorCloses(harness);
    });

    it("keeps each chunk intact unless onData returns true, and copies the next one over a chunk handed back", { skip: BUN_ONLY }, async () => {
      for (const [size, base] of [[1000, 0], [3000, 100]] as const) {
        const { client, server } = await harness.unstartedPair();
        const chunks = recordChunks(server);
        chunks.keep = false;
        let previous = await send(client, chunks, size, base);
        // Plain Uint8Arrays, as on the other runtimes (binaryType "uint8array"; the default would give Buffers).
        assert.equal(Object.getPrototypeOf(previous), Uint8Array.prototype);
        for (let i = 1; i < 10; i++) {
          const chunk = await send(client, chunks, size, base + i);
          assert.ok(sameMemory(chunk, previous), `onData returned true: chunk ${i} of ${size} bytes is copied where the one before lay`);
          assert.equal(chunk, previous, "the same view of the same bytes");
          previous = chunk;
        }
        chunks.keep = true;
        const kept = await send(client, chunks, size, base + 10);
        assert.ok(sameMemory(kept, previous), "copied into the free memory once more");
        chunks.keep = false;
        const later: Uint8Array[] = [];
        for (let i = 11; i < 20; i++) later.push(await send(client, chunks, size, base + i));
        await sleep(20);
        assert.deepEqual(kept, pattern(size, base + 10), "the chunk onData kept is intact");
        assert.ok(later.every((chunk) => !sameMemory(chunk, kept) && chunk.buffer === later[0]!.buffer), "later chunks are copied elsewhere");
        assert.ok(later.every((chunk) => sameMemory(chunk, later[0]!)), "and over each other again once handed back");
        client.abort();
        server.abort();
      }
    });

    it("copies every connection's chunks into the memory they share, never over a chunk kept", { skip: BUN_ONLY }, async () => {
      const a = await harness.unstartedPair();
      const b = await harness.unstartedPair();
      const aChunks = recordChunks(a.server);
      const bChunks = recordChunks(b.server);
      bChunks.keep = false;
      const b0 = await send(b.client, bChunks, 3000, 0);
      const a1 = await send(a.client, aChunks, 3000, 1);
      assert.ok(sameMemory(a1, b0), "a chunk handed back by one connection: the next, of another, is copied over it");
      const b1 = await send(b.client, bChunks, 3000, 2);
      assert.equal(b1.buffer, a1.buffer, "the same memory");
      assert.ok(b1.byteOffset >= a1.byteOffset + a1.length, "after the chunk the other connection keeps");
      const b2 = await send(b.client, bChunks, 3000, 3);
      assert.ok(sameMemory(b2, b1), "and there again once handed back");
      // The holder closes: its chunk stays its receiver's.
      a.server.abort();
      a.client.abort();
      await sleep(10);
      await send(b.client, bChunks, 3000, 4);
      assert.deepEqual(a1, pattern(3000, 1), "the closed holder's chunk keeps its bytes");
      b.client.abort();
      b.server.abort();
    });

    it("copies a deep pipeline's chunk of over 32 KiB into the shared memory too", { skip: BUN_ONLY }, async () => {
      const { client, server } = await harness.unstartedPair();
      const chunks = recordChunks(server);
      chunks.keep = false;
      const first = await send(client, chunks, 3000, 1);
      // Eight 4 KiB frames (32,800 bytes), read at once: paused while they
      // arrive, so one read takes them all. (Sixteen, 65,600 bytes, could pass
      // the receive window a fresh connection opens with.)
      const size = 8 * (4 + 4096);
      server.pause();
      client.write(pattern(size, 2));
      await until(() => client.backlog === 0, 5000, "the kernel took the pipeline");
      await sleep(50);
      const before = chunks.arrived.length;
      server.resume();
      await until(() => chunks.bytes === 3000 + size, 5000, "the pipeline");
      const arrived = chunks.arrived.slice(before);
      assert.deepEqual(arrived.map(({ chunk }) => chunk.length), [size], "one read");
      assert.equal(arrived[0]!.chunk.buffer, first.buffer, "copied into the shared memory, not handed on as it came");
      assert.deepEqual(arrived[0]!.copy, pattern(size, 2));
      client.abort();
      server.abort();
    });

    it("delivers an abort made before start as a close without error", { skip: BUN_ONLY }, async () => {
      const accepted = deferred<Connection>();
      harness.unstarted = (connection) => accepted.resolve(connection);
      try {
        const { client } = await harness.connect();
        client.write(new TextEncoder().encode("before start"));
        const server = await within(accepted.promise, 5000, "accept");
        await sleep(30);
        server.abort();
        const rec = new Recorder();
        server.start(rec);
        await within(rec.closed.promise, 5000, "close");
        assert.equal(rec.closeError, undefined);
        assert.equal(rec.closes, 1);
        client.abort();
      } finally {
        harness.unstarted = undefined;
      }
    });

    it("ends the delivery of events from before start at a handler that throws, closing with its error", { skip: BUN_ONLY }, async () => {
      const { client, clientRec, server } = await harness.unstartedPair();
      client.write(new TextEncoder().encode("before start"));
      client.end();
      await sleep(50);
      const rec = new Recorder();
      const oops = new Error("handler failed");
      rec.throwOnData = oops;
      server.start(rec);
      await within(rec.closed.promise, 5000, "close");
      assert.deepEqual(rec.events, ["data", "close"], "no end after the handler threw");
      assert.equal(rec.closeError, oops);
      await within(clientRec.closed.promise, 5000, "client close");
      assert.equal(rec.closes, 1);
    });

    it("reports the error of a handler that throws at start, before a close that came before start", { skip: BUN_ONLY }, async () => {
      const { client, server } = await harness.unstartedPair();
      client.write(new TextEncoder().encode("before start"));
      await sleep(50);
      server.abort();
      const rec = new Recorder();
      const oops = new Error("handler failed");
      rec.throwOnData = oops;
      server.start(rec);
      await within(rec.closed.promise, 5000, "close");
      assert.deepEqual(rec.events, ["data", "close"]);
      assert.equal(rec.closeError, oops);
      client.abort();
    });

    it("reports the bound address of a listener on localhost and closes it twice", { skip: BUN_ONLY }, async () => {
      const local = await harness.transport.listen({ host: "localhost", port: 0 }, (connection) => connection.abort());
      assert.match(local.address.host, /^(127\.0\.0\.1|::1)$/);
      assert.ok(local.address.port > 0);
      await local.close();
      await local.close();
      await assert.rejects(harness.transport.connect({ host: local.address.host, port: local.address.port }), (error: CodedError) => {
        assert.equal(error.code, "ECONNREFUSED");
        return true;
      });
    });
  });
});
