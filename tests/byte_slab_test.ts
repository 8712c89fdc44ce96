import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ByteSlab } from "../src/_byte_slab.ts";

function sameMemory(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset;
}

describe("ByteSlab", () => {
  it("hands out regions that never overlap while they are held", () => {
    const slab = new ByteSlab(256, 64);
    const regions = Array.from({ length: 12 }, (_, i) => slab.take(1 + i * 5));
    regions.forEach((region, i) => region.fill(i + 1));
    regions.forEach((region, i) => assert.ok(region.every((byte) => byte === i + 1), `region ${i} intact`));
  });

  it("gives requests over maxRegion a buffer of their own", () => {
    const slab = new ByteSlab(256, 64);
    const small = slab.take(8);
    const big = slab.take(65);
    assert.equal(big.length, 65);
    assert.notEqual(big.buffer, small.buffer);
    assert.equal(slab.reclaim(big), false);
  });

  it("reuses the last region once it is reclaimed, and only the last", () => {
    const slab = new ByteSlab(256, 64);
    const first = slab.take(10);
    const second = slab.take(20);
    assert.equal(slab.reclaim(first), false, "an older region is not reclaimed");
    assert.equal(slab.reclaim(second), true);
    assert.equal(slab.reclaim(second), false, "reclaimed once");
    const third = slab.take(20);
    assert.ok(sameMemory(third, second), "the next take reuses the reclaimed bytes");
    first.fill(1);
    third.fill(3);
    assert.ok(first.every((byte) => byte === 1), "the older region is untouched");
  });

  it("hands out the same view again for the same bytes once it is reclaimed", () => {
    const slab = new ByteSlab(256, 64);
    const first = slab.take(16);
    assert.equal(slab.reclaim(first), true);
    assert.equal(slab.take(16), first, "same size, same place: the same object");
    assert.equal(slab.reclaim(first), true);
    const longer = slab.take(24);
    assert.notEqual(longer, first, "another size gets a view of its own");
    assert.ok(sameMemory(longer, first));
    const held = slab.take(16);
    assert.notEqual(held, first, "a region not reclaimed is never handed out again");
  });

  it("trims the last region and gives its tail to the next take", () => {
    const slab = new ByteSlab(256, 64);
    const region = slab.take(48);
    const kept = slab.trim(region, 5);
    assert.equal(kept.length, 5);
    assert.ok(sameMemory(kept, region));
    const next = slab.take(8);
    assert.equal(next.byteOffset, region.byteOffset + 8, "the tail past 5 bytes (aligned to 8) is handed out again");
    kept.fill(7);
    next.fill(9);
    assert.ok(kept.every((byte) => byte === 7));
  });

  it("starts a new slab when the current one is full, leaving old regions alone", () => {
    const slab = new ByteSlab(64, 64);
    const a = slab.take(40);
    const b = slab.take(40);
    assert.notEqual(a.buffer, b.buffer);
    a.fill(1);
    b.fill(2);
    assert.ok(a.every((byte) => byte === 1));
  });
});
