import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReadRegions } from "../src/transport/_read_regions.ts";

/** Take a region and pretend the runtime read `bytes` into it (the whole region when "all"). */
function read(regions: ReadRegions, amount: number | "all", fill = 1): Uint8Array {
  const region = regions.take();
  const bytes = amount === "all" ? region.length : amount;
  assert.ok(bytes <= region.length, `a read of ${bytes} fits the ${region.length}-byte region`);
  region.fill(fill, 0, bytes);
  return regions.filled(region, bytes);
}

describe("ReadRegions", () => {
  it("starts at 512 bytes and doubles while reads fill their region, up to 64 KiB", () => {
    const regions = new ReadRegions();
    const sizes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const region = regions.take();
      sizes.push(region.length);
      regions.filled(region, region.length);
    }
    // The eighth region is what was left of a 64 KiB slab after the two before.
    assert.deepEqual(sizes, [512, 1024, 2048, 4096, 8192, 16384, 32768, 16384, 65536, 65536, 65536, 65536]);
  });

  it("shrinks the read size back to 512 bytes when reads come back small", () => {
    const regions = new ReadRegions();
    for (let i = 0; i < 6; i++) read(regions, "all");
    const sizes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const region = regions.take();
      sizes.push(region.length);
      regions.filled(region, 10);
    }
    assert.ok(sizes[0]! > 512, "grown first");
    for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i]! <= sizes[i - 1]!, `never grows on small reads: ${sizes}`);
    assert.equal(sizes.at(-1), 512);
  });

  it("never hands out bytes of a chunk that was not released, and reuses a released one", () => {
    const regions = new ReadRegions();
    for (let i = 0; i < 6; i++) read(regions, "all"); // room for several reads per slab
    const kept = read(regions, 100, 7);
    const next = regions.take();
    assert.equal(next.buffer, kept.buffer, "same slab");
    assert.ok(next.byteOffset >= kept.byteOffset + kept.length, "after the kept chunk");
    next.fill(9);
    assert.ok(kept.every((byte) => byte === 7), "the kept chunk is untouched");
    const chunk = regions.filled(next, 50);
    regions.release(chunk);
    const again = regions.take();
    assert.equal(again.buffer, chunk.buffer);
    assert.equal(again.byteOffset, chunk.byteOffset, "the released chunk's bytes are read into again");
    regions.release(again);
    assert.equal(regions.take().byteOffset, chunk.byteOffset, "an unused region comes back whole");
  });

  it("releasing an older chunk changes nothing (only the latest can come back)", () => {
    const regions = new ReadRegions();
    for (let i = 0; i < 6; i++) read(regions, "all"); // room for several reads per slab
    const first = read(regions, 10, 1);
    const second = read(regions, 10, 2);
    assert.equal(second.buffer, first.buffer);
    regions.release(first);
    const next = regions.take();
    assert.equal(next.buffer, second.buffer);
    assert.ok(next.byteOffset >= second.byteOffset + second.length);
    assert.ok(first.every((byte) => byte === 1) && second.every((byte) => byte === 2));
  });

  it("hands out the same region and chunk objects again for reads into released memory, and new ones otherwise", () => {
    const regions = new ReadRegions();
    for (let i = 0; i < 6; i++) read(regions, "all"); // read size and slab grown
    const region = regions.take();
    const chunk = regions.filled(region, 20_000); // over a quarter of the region: the read size stays
    regions.release(chunk);
    const sameRegion = regions.take();
    assert.equal(sameRegion, region, "the same bytes to read into: the same region object");
    const sameChunk = regions.filled(sameRegion, 20_000);
    assert.equal(sameChunk, chunk, "the same bytes read: the same chunk object");
    regions.release(sameChunk);

    const longer = regions.filled(regions.take(), 20_100);
    assert.notEqual(longer, chunk, "another length: another view");
    assert.deepEqual([longer.buffer, longer.byteOffset, longer.length], [chunk.buffer, chunk.byteOffset, 20_100]);
    // Kept (not released): the next region lies after it, a new object.
    const after = regions.take();
    assert.notEqual(after, region);
    assert.ok(after.byteOffset >= longer.byteOffset + longer.length, "never over a chunk still held");
    const full = regions.filled(after, after.length);
    assert.equal(full, after, "a read that fills its region is the region itself");
  });

  it("hands out new views once it moves to a new slab", () => {
    const regions = new ReadRegions();
    const first = regions.take();
    regions.release(regions.filled(first, 10));
    assert.equal(regions.take(), first);
    regions.filled(first, first.length); // fills it: the read size grows and the slab has no room left
    const next = regions.take();
    assert.notEqual(next.buffer, first.buffer, "a new slab");
    assert.notEqual(next, first);
    regions.release(regions.filled(next, 4000)); // over a quarter: the read size stays
    assert.equal(regions.take(), next, "views of the new slab are handed out again");
  });
});
