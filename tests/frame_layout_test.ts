import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FrameDecoder, FrameEncoder, FrameLayout, type FrameLayoutOptions } from "../mod.ts";

describe("FrameLayout", () => {
  it("defaults to a u16 id, u16 length, big-endian and bodies up to 65535 bytes", () => {
    const layout = new FrameLayout();
    assert.equal(layout.idBytes, 2);
    assert.equal(layout.lengthBytes, 2);
    assert.equal(layout.byteOrder, "big");
    assert.equal(layout.headerSize, 4);
    assert.equal(layout.maxBody, 65535);
    assert.equal(layout.maxId, 65535);
    assert.equal(FrameLayout.from(), FrameLayout.DEFAULT);
  });

  it("defaults maxBody to what the length field holds, capped at 64 MiB for 4-byte lengths", () => {
    assert.equal(new FrameLayout({ lengthBytes: 1 }).maxBody, 255);
    assert.equal(new FrameLayout({ lengthBytes: 2 }).maxBody, 65535);
    assert.equal(new FrameLayout({ lengthBytes: 4 }).maxBody, 64 * 1024 * 1024);
    assert.equal(new FrameLayout({ lengthBytes: 4, maxBody: 2 ** 32 - 1 }).maxBody, 2 ** 32 - 1);
  });

  it("computes header size and largest id for every width", () => {
    assert.equal(new FrameLayout({ idBytes: 0, lengthBytes: 1 }).headerSize, 1);
    assert.equal(new FrameLayout({ idBytes: 0 }).maxId, 0);
    assert.equal(new FrameLayout({ idBytes: 1 }).maxId, 255);
    assert.equal(new FrameLayout({ idBytes: 4, lengthBytes: 4 }).headerSize, 8);
    assert.equal(new FrameLayout({ idBytes: 4 }).maxId, 2 ** 32 - 1);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ["idBytes", { idBytes: 3 }, /Invalid option "idBytes": 3 is not one of 0, 1, 2, 4/],
    ["lengthBytes", { lengthBytes: 0 }, /Invalid option "lengthBytes": 0 is not one of 1, 2, 4/],
    ["lengthBytes", { lengthBytes: "2" }, /Invalid option "lengthBytes": "2"/],
    ["byteOrder", { byteOrder: "middle" }, /Invalid option "byteOrder": "middle" is not "big" or "little"/],
    ["maxBody", { maxBody: -1 }, /Invalid option "maxBody": -1 is not a non-negative integer/],
    ["maxBody", { maxBody: 1.5 }, /Invalid option "maxBody": 1.5/],
    ["maxBody", { maxBody: Number.NaN }, /Invalid option "maxBody": NaN/],
    ["maxBody", { maxBody: 65536 }, /Invalid option "maxBody": 65536 exceeds 65535, the largest a 2-byte length field holds/],
    ["maxBody", { lengthBytes: 1, maxBody: 256 }, /Invalid option "maxBody": 256 exceeds 255/],
    ["maxBody", { lengthBytes: 4, maxBody: 2 ** 32 }, /Invalid option "maxBody": 4294967296 exceeds 4294967295/],
  ];
  for (const [name, options, message] of bad) {
    it(`rejects a bad "${name}" (${JSON.stringify(options)}) with a RangeError that names it`, () => {
      const opts = options as FrameLayoutOptions;
      assert.throws(() => new FrameLayout(opts), (error: unknown) => {
        assert.ok(error instanceof RangeError, `expected RangeError, got ${String(error)}`);
        assert.match(error.message, message);
        return true;
      });
      assert.throws(() => new FrameEncoder(opts), RangeError);
      assert.throws(() => new FrameDecoder(opts), RangeError);
    });
  }

  it("is immutable once built", () => {
    const layout = new FrameLayout();
    assert.throws(() => {
      (layout as { maxBody: number }).maxBody = 1;
    }, TypeError);
    assert.equal(layout.maxBody, 65535);
  });
});
