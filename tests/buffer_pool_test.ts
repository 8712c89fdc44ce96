import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { givePooled, POOL_BYTES_PER_SIZE, POOL_MAX_SIZE, POOL_MIN_SIZE, pooledBytes, takePooled } from "../src/_buffer_pool.ts";

describe("buffer pool", () => {
  it("hands out power-of-two buffers from 8 KiB to 64 KiB, and exact ones past that", () => {
    assert.equal(takePooled(1).length, POOL_MIN_SIZE);
    assert.equal(takePooled(8192).length, 8192);
    assert.equal(takePooled(8193).length, 16384);
    assert.equal(takePooled(40000).length, 65536);
    assert.equal(takePooled(POOL_MAX_SIZE + 1).length, POOL_MAX_SIZE + 1);
  });

  it("reuses a buffer given back, once", () => {
    const first = takePooled(20000);
    givePooled(first);
    const again = takePooled(30000);
    assert.equal(again, first);
    assert.notEqual(takePooled(30000), first, "not handed out twice");
  });

  it("keeps at most its byte limit of free buffers per size, and ignores what it did not hand out", () => {
    const before = pooledBytes();
    const many = Array.from({ length: POOL_BYTES_PER_SIZE / POOL_MAX_SIZE + 4 }, () => takePooled(POOL_MAX_SIZE));
    for (const buffer of many) givePooled(buffer);
    const held = pooledBytes() - before;
    assert.ok(held <= POOL_BYTES_PER_SIZE, `held ${held}`);
    givePooled(new Uint8Array(POOL_MAX_SIZE * 2));
    givePooled(new Uint8Array(10000));
    assert.equal(pooledBytes() - before, held);
  });

  it("keeps a largest buffer for each of 32 flushes in flight at once, and hands them all out again", () => {
    // Deep pipelines on Deno: one flush of up to 64 KiB waits for its write on every connection.
    const out = Array.from({ length: 32 }, () => takePooled(POOL_MAX_SIZE));
    for (const buffer of out) givePooled(buffer);
    const again = new Set(Array.from({ length: 32 }, () => takePooled(POOL_MAX_SIZE)));
    assert.equal(out.filter((buffer) => again.has(buffer)).length, 32, "none allocated afresh");
  });
});
