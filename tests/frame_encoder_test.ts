import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeFrame, FrameDecoder, FrameEncoder, type FrameLayoutOptions, FrameTooLargeError } from "../mod.ts";
import { encodeFrameInto } from "../src/frame_encoder.ts";
import { fromHex, toHex } from "./_bytes.ts";

const utf8 = new TextEncoder();

/** Known-answer vectors: layout, id, body (hex), wire bytes (hex). */
const VECTORS: Array<[string, FrameLayoutOptions, number, string, string]> = [
  ["default layout", {}, 1001, "68 69", "03 e9 00 02 68 69"],
  ["little-endian", { byteOrder: "little" }, 1001, "68 69", "e9 03 02 00 68 69"],
  ["length-only (idBytes 0)", { idBytes: 0 }, 0, "68 69", "00 02 68 69"],
  ["1-byte id", { idBytes: 1 }, 7, "68 69", "07 00 02 68 69"],
  ["4-byte id", { idBytes: 4 }, 7, "68 69", "00 00 00 07 00 02 68 69"],
  ["1-byte length", { lengthBytes: 1 }, 1001, "68 69", "03 e9 02 68 69"],
  ["4-byte length", { lengthBytes: 4 }, 1001, "68 69", "03 e9 00 00 00 02 68 69"],
  ["4-byte id and length, little-endian", { idBytes: 4, lengthBytes: 4, byteOrder: "little" }, 0x01020304, "61", "04 03 02 01 01 00 00 00 61"],
  ["4-byte id, big-endian, largest id", { idBytes: 4 }, 0xffffffff, "", "ff ff ff ff 00 00"],
  ["length-only, 4-byte little-endian length", { idBytes: 0, lengthBytes: 4, byteOrder: "little" }, 0, "01 02 03", "03 00 00 00 01 02 03"],
  ["id 0, empty body", {}, 0, "", "00 00 00 00"],
  ["id 65535, empty body", {}, 65535, "", "ff ff 00 00"],
  ["id 65535, little-endian", { byteOrder: "little" }, 0xff01, "00", "01 ff 01 00 00"],
  ["largest 1-byte length", { idBytes: 1, lengthBytes: 1 }, 255, "ff".repeat(255), "ff ff " + "ff ".repeat(255)],
];

describe("FrameEncoder", () => {
  for (const [name, layout, id, body, wire] of VECTORS) {
    it(`encodes the known-answer vector: ${name}`, () => {
      const frame = new FrameEncoder(layout).encode(id, fromHex(body));
      assert.equal(toHex(frame), toHex(fromHex(wire)));
    });
    it(`decodes the known-answer vector back: ${name}`, () => {
      const frames = new FrameDecoder(layout).push(fromHex(wire));
      assert.equal(frames.length, 1);
      assert.equal(frames[0]!.id, id);
      assert.equal(toHex(frames[0]!.body), toHex(fromHex(body)));
    });
  }

  it("encodeFrame gives id 1001 and body hi as 03 e9 00 02 68 69", () => {
    assert.equal(toHex(encodeFrame(1001, utf8.encode("hi"))), "03 e9 00 02 68 69");
    assert.equal(toHex(encodeFrame(1001, utf8.encode("hi"), { byteOrder: "little" })), "e9 03 02 00 68 69");
  });

  it("allocates exactly one buffer of header plus body", () => {
    const frame = encodeFrame(9, new Uint8Array(100));
    assert.equal(frame.length, 104);
    assert.equal(frame.byteOffset, 0);
    assert.equal(frame.buffer.byteLength, 104);
  });

  it("copies the body, so later changes to the caller's bytes do not reach the frame", () => {
    const body = utf8.encode("abc");
    const frame = encodeFrame(1, body);
    body[0] = 0x7a;
    assert.equal(toHex(frame), "00 01 00 03 61 62 63");
  });

  it("encodes into a caller's buffer at an offset and returns the next offset", () => {
    const target = new Uint8Array(12).fill(0xaa);
    const next = encodeFrameInto(target, 3, 7, utf8.encode("a"));
    assert.equal(next, 8);
    assert.equal(toHex(target), "aa aa aa 00 07 00 01 61 aa aa aa aa");
  });

  it("coalesces several frames into one buffer byte-identical to separate encodes", () => {
    const encoder = new FrameEncoder({ idBytes: 1, lengthBytes: 4, byteOrder: "little" });
    const parts: Array<[number, Uint8Array]> = [[1, utf8.encode("one")], [2, new Uint8Array(0)], [255, utf8.encode("three")]];
    const size = parts.reduce((sum, [, body]) => sum + encoder.frameSize(body), 0);
    const out = new Uint8Array(size);
    let offset = 0;
    for (const [id, body] of parts) offset = encoder.encodeInto(out, offset, id, body);
    assert.equal(offset, size);
    const separate = parts.map(([id, body]) => toHex(encoder.encode(id, body))).join(" ");
    assert.equal(toHex(out), separate);
  });

  it("refuses to write past the end of the caller's buffer and leaves it untouched", () => {
    const target = new Uint8Array(6);
    assert.throws(() => encodeFrameInto(target, 3, 1, utf8.encode("ab")), {
      name: "RangeError",
      message: "Cannot encode frame: it needs 6 bytes at offset 3 but the buffer holds 6",
    });
    assert.throws(() => encodeFrameInto(target, -1, 1, new Uint8Array(0)), RangeError);
    assert.equal(toHex(target), "00 00 00 00 00 00");
  });

  for (const id of [-1, 65536, 1.5, Number.NaN]) {
    it(`rejects id ${id} in the default layout with a RangeError`, () => {
      assert.throws(() => encodeFrame(id, new Uint8Array(0)), {
        name: "RangeError",
        message: `Cannot encode frame: id ${id} is not an integer from 0 to 65535`,
      });
    });
  }

  it("rejects a non-zero id when the layout has no id field", () => {
    assert.throws(() => encodeFrame(5, new Uint8Array(0), { idBytes: 0 }), /layout has no id field \(idBytes 0\)/);
    assert.throws(() => encodeFrame(256, new Uint8Array(0), { idBytes: 1 }), /from 0 to 255/);
  });

  it("rejects a body longer than maxBody with FrameTooLargeError carrying length and limit", () => {
    const encoder = new FrameEncoder({ maxBody: 3 });
    assert.equal(encoder.encode(1, new Uint8Array(3)).length, 7);
    assert.throws(() => encoder.encode(1, new Uint8Array(4)), (error: unknown) => {
      assert.ok(error instanceof FrameTooLargeError);
      assert.equal(error.name, "FrameTooLargeError");
      assert.equal(error.length, 4);
      assert.equal(error.limit, 3);
      assert.equal(error.message, "Cannot encode frame: body length 4 exceeds limit 3");
      return true;
    });
    assert.throws(() => encodeFrame(1, new Uint8Array(65536)), FrameTooLargeError);
  });

  it("rejects a body that is not a Uint8Array with a TypeError", () => {
    assert.throws(() => encodeFrame(1, "hi" as unknown as Uint8Array), TypeError);
  });
});
