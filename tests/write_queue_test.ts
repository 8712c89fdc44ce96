import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WriteQueue } from "../src/transport/_write_queue.ts";
import { concat, pattern } from "./_bytes.ts";
import { runSeed, SeededRandom } from "./_seeded_random.ts";

/**
 * Write everything queued as a runtime taking at most `room` bytes per write
 * would, until a write is partial; return the bytes written and each write's size.
 */
function writeAll(queue: WriteQueue, room = Infinity): { bytes: Uint8Array; writes: number[] } {
  const written: Uint8Array[] = [];
  const writes: number[] = [];
  for (let chunk = queue.next(); chunk !== undefined; chunk = queue.next()) {
    const taken = Math.min(chunk.length, room);
    written.push(chunk.slice(0, taken));
    writes.push(chunk.length);
    queue.advance(taken);
    if (taken < chunk.length) break;
  }
  return { bytes: concat(written), writes };
}

/** `a` and `b` hold the same bytes (quicker than `deepEqual` on megabytes). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const KiB = 1024;

describe("WriteQueue", () => {
  it("is empty at first: nothing to write, no backlog, no drain", () => {
    const queue = new WriteQueue();
    assert.equal(queue.next(), undefined);
    assert.equal(queue.backlog, 0);
    assert.equal(queue.takeDrain(), false);
  });

  it("counts the backlog, sends buffers in order and reports one drain once they are written", () => {
    const queue = new WriteQueue();
    const parts = [pattern(20 * KiB, 1), pattern(30 * KiB, 2), pattern(5, 3)];
    for (const part of parts) queue.push(part);
    assert.equal(queue.backlog, 50 * KiB + 5);
    assert.equal(queue.takeDrain(), false, "no drain while bytes are queued");
    const { bytes } = writeAll(queue);
    assert.deepEqual(bytes, concat(parts));
    assert.equal(queue.backlog, 0);
    assert.equal(queue.takeDrain(), true);
    assert.equal(queue.takeDrain(), false, "one drain per backlog");
  });

  it("ignores an empty buffer", () => {
    const queue = new WriteQueue();
    queue.push(new Uint8Array(0));
    assert.equal(queue.next(), undefined);
    assert.equal(queue.takeDrain(), false, "nothing was queued: no drain");
  });

  it("keeps the untaken rest of a partial write and sends it first, without copying it again", () => {
    const queue = new WriteQueue();
    const big = pattern(100 * KiB, 1);
    queue.push(big);
    const first = queue.next()!;
    assert.equal(first, big, "a large buffer is written as it is");
    queue.advance(1000);
    assert.equal(queue.backlog, big.length - 1000);
    queue.push(pattern(10, 2));
    const rest = queue.next()!;
    assert.equal(rest.buffer, big.buffer, "the rest is a view of the buffer pushed");
    assert.equal(rest.byteOffset, 1000);
    assert.equal(rest.length, big.length - 1000, "and not merged with what follows");
    queue.advance(0);
    assert.equal(queue.backlog, big.length - 1000 + 10, "a write that took nothing changes nothing");
    assert.deepEqual(writeAll(queue).bytes, concat([big.subarray(1000), pattern(10, 2)]));
  });

  it("merges a run of buffers under 16 KiB into writes of at most 64 KiB, and leaves larger ones alone", () => {
    const queue = new WriteQueue();
    const sizes = [100, 200, 16 * KiB, 1, 2, ...Array<number>(20).fill(4 * KiB), 3];
    const parts = sizes.map((size, i) => pattern(size, i));
    for (const part of parts) queue.push(part);
    const { bytes, writes } = writeAll(queue);
    assert.deepEqual(bytes, concat(parts));
    // 100 + 200; 16 KiB alone; 1 + 2 + fifteen 4 KiB (the sixteenth would pass 64 KiB); five 4 KiB + 3.
    assert.deepEqual(writes, [300, 16 * KiB, 3 + 15 * 4 * KiB, 5 * 4 * KiB + 3]);
  });

  it("writes a merged buffer's untaken rest on its own", () => {
    const queue = new WriteQueue();
    const parts = [pattern(1000, 1), pattern(1000, 2), pattern(1000, 3)];
    for (const part of parts) queue.push(part);
    const merged = queue.next()!;
    assert.equal(merged.length, 3000);
    queue.advance(1500);
    queue.push(pattern(10, 4));
    const rest = queue.next()!;
    assert.equal(rest.length, 1500, "the rest of the merged buffer, without the buffer pushed after");
    assert.deepEqual(rest, concat(parts).subarray(1500));
  });

  it("drops everything on clear, drain included", () => {
    const queue = new WriteQueue();
    queue.push(pattern(100, 1));
    queue.clear();
    assert.equal(queue.backlog, 0);
    assert.equal(queue.next(), undefined);
    assert.equal(queue.takeDrain(), false);
  });

  it("sends over a thousand buffers in order through backlogs that empty and fill again", () => {
    const queue = new WriteQueue();
    const pushed: Uint8Array[] = [];
    const written: Uint8Array[] = [];
    for (let round = 0; round < 2; round++) {
      // Large and tiny buffers in turn: none merged, so the queue holds over a thousand entries.
      for (let i = 0; i < 1200; i++) {
        const part = i % 2 === 0 ? new Uint8Array(16 * KiB).fill(i % 251) : pattern(1 + (i % 7), round * 1200 + i);
        pushed.push(part);
        queue.push(part);
      }
      // Written in small steps, so that the queue is compacted on the way.
      while (queue.backlog > 0) written.push(writeAll(queue, 50 * KiB).bytes);
      assert.equal(queue.takeDrain(), true, `round ${round}: one drain`);
    }
    assert.ok(sameBytes(concat(written), concat(pushed)), "every byte in order");
  });

  it("delivers every byte in order whatever the sizes and however much each write takes", () => {
    const seed = runSeed();
    const random = new SeededRandom(seed);
    const queue = new WriteQueue();
    const pushed: Uint8Array[] = [];
    const written: Uint8Array[] = [];
    let drains = 0;
    for (let step = 0; step < 2000; step++) {
      if (random.next() < 0.6) {
        const size = random.pick([0, 1, 7, 100, 4 * KiB, 16 * KiB - 1, 16 * KiB, 70 * KiB]);
        const part = random.bytes(Math.min(size, 64));
        const bytes = size <= 64 ? part : concat([part, new Uint8Array(size - 64)]);
        pushed.push(bytes);
        queue.push(bytes);
      } else {
        written.push(writeAll(queue, random.pick([0, 1, 100, 5000, 20 * KiB, Infinity])).bytes);
        if (queue.takeDrain()) drains++;
      }
      const total = pushed.reduce((n, p) => n + p.length, 0) - written.reduce((n, w) => n + w.length, 0);
      assert.equal(queue.backlog, total, `seed ${seed}, step ${step}: the backlog counts what is unwritten`);
    }
    written.push(writeAll(queue).bytes);
    if (queue.takeDrain()) drains++;
    assert.deepEqual(concat(written), concat(pushed), `seed ${seed}: every byte in order`);
    assert.ok(drains > 0, `seed ${seed}: drains were reported`);
  });
});
