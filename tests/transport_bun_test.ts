import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { detectRuntime } from "../src/transport/detect.ts";
import type { Connection } from "../src/transport/types.ts";
import { deferred, sleep, until, within } from "./_async.ts";
import { concat, pattern } from "./_bytes.ts";
import { assertHandlerErrorCloses, type CodedError, type Pair, Recorder, TransportHarness } from "./_transport_harness.ts";

const ON_BUN = detectRuntime() === "bun";
/** Why the Bun-only cases are skipped elsewhere; `false` runs them. */
const BUN_ONLY: string | false = ON_BUN ? false : `the Bun adapter needs the Bun global; this is ${detectRuntime()}`;

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

    it("keeps each chunk intact until onData returns true or release hands it back, then copies later ones into its memory", { skip: BUN_ONLY }, async () => {
      const { client, server } = await harness.unstartedPair();
      const arrived: Array<{ chunk: Uint8Array; copy: Uint8Array }> = [];
      let bytes = 0;
      let keep = true;
      server.start({
        onData(chunk) {
          arrived.push({ chunk, copy: chunk.slice() });
          bytes += chunk.length;
          return keep ? undefined : true;
        },
        onEnd() {},
        onDrain() {},
        onClose() {},
      });
      const send = async (size: number, seed: number): Promise<Uint8Array> => {
        const total = bytes + size;
        client.write(pattern(size, seed));
        await until(() => bytes === total, 5000, `chunk ${seed}`);
        const { chunk, copy } = arrived.at(-1)!;
        assert.equal(chunk.length, size, `chunk ${seed} arrived in one piece`);
        assert.deepEqual(copy, pattern(size, seed), `chunk ${seed} held what was sent when onData ran`);
        return chunk;
      };
      const same = (a: Uint8Array, b: Uint8Array): boolean => a.buffer === b.buffer && a.byteOffset === b.byteOffset;
      // 1,000 bytes: copied into the connection's own memory; 3,000: into the memory connections share.
      for (const [size, base] of [[1000, 0], [3000, 100]] as const) {
        keep = true;
        const kept: Uint8Array[] = [];
        for (let i = 0; i < 10; i++) kept.push(await send(size, base + i));
        await sleep(20);
        kept.forEach((chunk, i) => assert.deepEqual(chunk, pattern(size, base + i), `kept chunk ${i} of ${size} bytes is intact`));
        // Plain Uint8Arrays, as on the other runtimes (binaryType "uint8array"; the default would give Buffers).
        for (const chunk of kept) assert.equal(Object.getPrototypeOf(chunk), Uint8Array.prototype);

        for (const chunk of kept) server.release!(chunk);
        const again = await send(size, base + 10);
        assert.ok(kept.some((chunk) => same(chunk, again)), `a ${size}-byte chunk is copied into memory handed back with release`);

        keep = false;
        server.release!(again);
        let previous = await send(size, base + 11);
        assert.ok(same(previous, again), "and into the memory of a chunk handed back after it was kept");
        for (let i = 12; i < 20; i++) {
          const chunk = await send(size, base + i);
          assert.ok(same(chunk, previous), `onData returned true: chunk ${i} of ${size} bytes is copied where the one before lay`);
          previous = chunk;
        }
        // Chunks never handed back keep their bytes whatever came after.
        kept.forEach((chunk, i) => {
          if (!same(chunk, again)) assert.deepEqual(chunk, pattern(size, base + i), `kept chunk ${i} is intact at the end`);
        });
      }
      client.abort();
      server.abort();
    });

    /**
     * Send `size` bytes of pattern `seed` from the client and return the chunk
     * the server side received them in (its recorder keeps every chunk:
     * onData returns nothing, so nothing is handed back unless a test does).
     */
    const deliver = async (pair: Pair, size: number, seed: number): Promise<Uint8Array> => {
      const total = pair.serverRec.bytes + size;
      pair.client.write(pattern(size, seed));
      await until(() => pair.serverRec.bytes === total, 5000, `chunk ${seed}`);
      return pair.serverRec.chunks.at(-1)!;
    };

    it("reads a small chunk into the memory of a kept one only once release hands that one back", { skip: BUN_ONLY }, async () => {
      const pair = await harness.pair();
      const { client, server } = pair;
      const send = (seed: number): Promise<Uint8Array> => deliver(pair, 100, seed);
      const first = await send(1);
      const second = await send(2);
      assert.notEqual(second.buffer, first.buffer, "a kept chunk's memory is not read into");
      server.release!(second);
      const third = await send(3);
      assert.notEqual(third.buffer, first.buffer, "handing back a chunk other than the last one copied frees nothing");
      server.release!(first);
      const fourth = await send(4);
      assert.equal(fourth.buffer, first.buffer, "the released chunk's memory is read into again");
      assert.deepEqual(fourth, pattern(100, 4));
      assert.deepEqual(second, pattern(100, 2));
      assert.deepEqual(third, pattern(100, 3));
      client.abort();
      server.abort();
    });

    it("copies a medium chunk into memory the connections share, only while no connection holds it", { skip: BUN_ONLY }, async () => {
      const a = await harness.pair();
      const b = await harness.pair();
      const send = (pair: Pair, seed: number): Promise<Uint8Array> => deliver(pair, 3000, seed);
      const a1 = await send(a, 1);
      const b1 = await send(b, 2);
      assert.notEqual(b1.buffer, a1.buffer, "while one connection holds the shared memory, another's chunk comes as it came");
      a.server.release!(a1);
      const b2 = await send(b, 3);
      assert.equal(b2.buffer, a1.buffer, "handed back: the next medium chunk of any connection is copied there");
      assert.deepEqual(b2, pattern(3000, 3));
      const a2 = await send(a, 4);
      assert.notEqual(a2.buffer, b2.buffer, "held by the other connection now");
      // Closing while holding it leaves that memory to the holder: new memory for the next chunk.
      b.server.abort();
      b.client.abort();
      await sleep(10);
      a.server.release!(a2);
      const a3 = await send(a, 5);
      assert.notEqual(a3.buffer, b2.buffer, "a closed holder's memory is never copied into again");
      assert.deepEqual(b2, pattern(3000, 3), "the closed holder's chunk keeps its bytes");
      assert.deepEqual([a1, b1, a2, a3], [pattern(3000, 3), pattern(3000, 2), pattern(3000, 4), pattern(3000, 5)]);
      a.server.release!(a3);
      const a4 = await send(a, 6);
      assert.equal(a4.buffer, a3.buffer, "the new shared memory is used in turn as before");
      a.client.abort();
      a.server.abort();
    });

    it("copies a deep pipeline's chunk of over 32 KiB into the shared memory too", { skip: BUN_ONLY }, async () => {
      const pair = await harness.pair();
      const { client, server, serverRec } = pair;
      const first = await deliver(pair, 3000, 1);
      server.release!(first);
      // Eight 4 KiB frames (32,800 bytes), read at once: paused while they
      // arrive, so one read takes them all. (Sixteen, 65,600 bytes, could pass
      // the receive window a fresh connection opens with.)
      const size = 8 * (4 + 4096);
      server.pause();
      client.write(pattern(size, 2));
      await until(() => client.backlog === 0, 5000, "the kernel took the pipeline");
      await sleep(50);
      const before = serverRec.chunks.length;
      server.resume();
      await until(() => serverRec.bytes === 3000 + size, 5000, "the pipeline");
      const chunks = serverRec.chunks.slice(before);
      assert.deepEqual(chunks.map((chunk) => chunk.length), [size], "one read");
      assert.equal(chunks[0]!.buffer, first.buffer, "copied into the shared memory, not handed on as it came");
      assert.deepEqual(chunks[0], pattern(size, 2));
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
