import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeUtf8, encodeUtf8 } from "../src/_utf8.ts";

describe("UTF-8 bodies", () => {
  it("decodes valid UTF-8, a genuine U+FFFD included, and drops a leading BOM", () => {
    assert.equal(decodeUtf8(encodeUtf8("héllo ✓ 😀")), "héllo ✓ 😀");
    assert.equal(decodeUtf8(new Uint8Array([0x61, 0xef, 0xbf, 0xbd, 0x62])), "a\uFFFDb");
    assert.equal(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])), "a");
    assert.equal(decodeUtf8(new Uint8Array(0)), "");
  });

  it("refuses malformed UTF-8 with a TypeError, as a fatal decoder does", () => {
    for (const bytes of [[0xff], [0x61, 0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xef, 0xbf, 0xbd, 0xff]]) {
      assert.throws(() => decodeUtf8(new Uint8Array(bytes)), TypeError, `bytes ${bytes.join(" ")}`);
    }
  });

  it("encodes lone surrogates as U+FFFD, as TextEncoder does", () => {
    assert.deepEqual([...encodeUtf8("a\ud800b")], [0x61, 0xef, 0xbf, 0xbd, 0x62]);
  });
});
