import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DecoderFailedError,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameEncoder,
  FrameTooLargeError,
  IncompleteFrameError,
} from "../mod.ts";
import { recyclingDecoder } from "../src/frame_decoder.ts";
import { concat, fromHex, toHex } from "./_bytes.ts";
import { collectGarbage, inReachabilityTrials, noGcReason } from "./_gc.ts";

const utf8 = new TextEncoder();

function describeFrames(frames: readonly Frame[]): string[] {
  return frames.map((f) => `${f.id}:${toHex(f.body)}`);
}

/** Feed `chunks` one by one and collect every frame, bodies copied out. */
function decodeChunks(decoder: FrameDecoder, chunks: Uint8Array[]): string[] {
  const out: string[] = [];
  for (const chunk of chunks) {
    decoder.decode(chunk, (id, body) => out.push(`${id}:${toHex(body)}`));
  }
  return out;
}

const STREAM = concat([
  encodeFrame(1001, utf8.encode("hi")),
  encodeFrame(0, new Uint8Array(0)),
  encodeFrame(65535, utf8.encode("xyz")),
]);
const STREAM_FRAMES = ["1001:68 69", "0:", "65535:78 79 7a"];

describe("FrameDecoder", () => {
  it("decodes id 1001 and body hi from 03 e9 00 02 68 69", () => {
    const frames = new FrameDecoder().push(fromHex("03 e9 00 02 68 69"));
    assert.deepEqual(describeFrames(frames), ["1001:68 69"]);
  });

  it("reassembles a header split 1+3", () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(fromHex("03")), []);
    assert.equal(decoder.bufferedBytes, 1);
    assert.deepEqual(describeFrames(decoder.push(fromHex("e9 00 00"))), ["1001:"]);
    assert.equal(decoder.bufferedBytes, 0);
  });

  it("calls onFrame with thisArg as this, for whole, split and empty bodies", () => {
    class Sink {
      readonly seen: string[] = [];
      frame(this: Sink, id: number, body: Uint8Array): void {
        this.seen.push(`${id}:${toHex(body)}`);
      }
    }
    const sink = new Sink();
    const decoder = new FrameDecoder();
    // A whole frame, then a frame whose body spans two chunks, then an empty body after a split header.
    decoder.decode(fromHex("00 01 00 01 aa 00 02 00 02 bb"), Sink.prototype.frame, sink);
    decoder.decode(fromHex("cc 00"), Sink.prototype.frame, sink);
    decoder.decode(fromHex("03 00 00"), Sink.prototype.frame, sink);
    assert.deepEqual(sink.seen, ["1:aa", "2:bb cc", "3:"]);
  });

  it("reassembles every two-cut split of a three-frame stream", () => {
    for (let a = 0; a <= STREAM.length; a++) {
      for (let b = a; b <= STREAM.length; b++) {
        const chunks = [STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)];
        assert.deepEqual(decodeChunks(new FrameDecoder(), chunks), STREAM_FRAMES, `cuts at ${a} and ${b}`);
      }
    }
  });

  it("reassembles a stream fed one byte per chunk", () => {
    const chunks = Array.from(STREAM, (byte) => Uint8Array.of(byte));
    assert.deepEqual(decodeChunks(new FrameDecoder(), chunks), STREAM_FRAMES);
  });

  it("emits every complete frame of a chunk in order and keeps the partial tail", () => {
    const tail = encodeFrame(42, utf8.encode("tail"));
    const decoder = new FrameDecoder();
    const frames = decoder.push(concat([STREAM, tail.subarray(0, 6)]));
    assert.deepEqual(describeFrames(frames), STREAM_FRAMES);
    assert.equal(decoder.inFrame, true);
    assert.equal(decoder.bufferedBytes, 6);
    assert.deepEqual(describeFrames(decoder.push(tail.subarray(6))), ["42:74 61 69 6c"]);
    assert.equal(decoder.inFrame, false);
  });

  it("accepts empty chunks without changing state", () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(new Uint8Array(0)), []);
    decoder.push(fromHex("00 01"));
    assert.deepEqual(decoder.push(new Uint8Array(0)), []);
    assert.equal(decoder.bufferedBytes, 2);
  });

  it("hands out a frame lying wholly in one chunk as a view of that chunk, copying nothing", () => {
    const chunk = concat([STREAM]);
    const decoder = new FrameDecoder();
    const frames = decoder.push(chunk);
    assert.equal(frames.length, 3);
    for (const frame of frames) assert.equal(frame.body.buffer, chunk.buffer);
    assert.equal(frames[0]!.body.byteOffset, 4);
    assert.equal(decoder.bytesCopied, 0);
    // The documented lifetime rule: overwriting the chunk changes the view.
    chunk[4] = 0x48;
    assert.equal(toHex(frames[0]!.body), "48 69");
  });

  it("gives a frame split across chunks memory of its own that later chunks never touch", () => {
    const wire = encodeFrame(5, utf8.encode("hello"));
    const first = wire.slice(0, 6);
    const second = wire.slice(6);
    const decoder = new FrameDecoder();
    decoder.push(first);
    const [frame] = decoder.push(second);
    assert.ok(frame);
    assert.equal(frame.body.length, 5);
    assert.notEqual(frame.body.buffer, first.buffer);
    assert.notEqual(frame.body.buffer, second.buffer);
    // Later split frames must not overwrite this body.
    for (let i = 0; i < 100; i++) {
      const other = encodeFrame(6, new Uint8Array(300).fill(i));
      decoder.push(other.subarray(0, 10));
      decoder.push(other.subarray(10));
    }
    first.fill(0);
    second.fill(0);
    assert.equal(toHex(frame.body), toHex(utf8.encode("hello")));
  });

  it("decodes zero-length bodies whole, with a split header, and in length-only frames", () => {
    assert.deepEqual(describeFrames(new FrameDecoder().push(fromHex("00 07 00 00 00 08 00 00"))), ["7:", "8:"]);
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(fromHex("00 07 00")), []);
    assert.deepEqual(describeFrames(decoder.push(fromHex("00"))), ["7:"]);
    assert.deepEqual(describeFrames(new FrameDecoder({ idBytes: 0 }).push(fromHex("00 00 00 00"))), ["0:", "0:"]);
  });

  it("decodes ids 0 and 65535", () => {
    const frames = new FrameDecoder().push(fromHex("00 00 00 01 aa ff ff 00 01 bb"));
    assert.deepEqual(describeFrames(frames), ["0:aa", "65535:bb"]);
  });

  describe("maxBody", () => {
    it("accepts a body of exactly maxBody bytes", () => {
      const decoder = new FrameDecoder({ maxBody: 10 });
      const frames = decoder.push(encodeFrame(1, new Uint8Array(10).fill(1)));
      assert.equal(frames.length, 1);
      assert.equal(frames[0]!.body.length, 10);
    });

    it("throws FrameTooLargeError for maxBody + 1 before buffering any body byte", () => {
      const decoder = new FrameDecoder({ maxBody: 10 });
      const wire = concat([fromHex("00 01 00 0b"), new Uint8Array(11)]);
      assert.throws(() => decoder.decode(wire, () => assert.fail("no frame expected")), (error: unknown) => {
        assert.ok(error instanceof FrameTooLargeError);
        assert.equal(error.name, "FrameTooLargeError");
        assert.equal(error.length, 11);
        assert.equal(error.limit, 10);
        assert.equal(error.message, "Cannot accept frame: announced length 11 exceeds limit 10");
        return true;
      });
      assert.equal(decoder.bytesCopied, 0);
      assert.equal(decoder.failed, true);
    });

    it("throws on a split header before buffering any body byte", () => {
      const decoder = new FrameDecoder({ maxBody: 10 });
      decoder.push(fromHex("00 01 00"));
      assert.throws(() => decoder.push(fromHex("0b 00 00 00")), FrameTooLargeError);
      assert.equal(decoder.bytesCopied, 4, "only the header was copied");
    });

    it("rejects 65536 bytes announced in a 4-byte length field by default-2-byte-limit peers", () => {
      const decoder = new FrameDecoder({ lengthBytes: 4, maxBody: 65535 });
      assert.throws(() => decoder.push(fromHex("00 01 00 01 00 00")), { name: "FrameTooLargeError", message: /65536 exceeds limit 65535/ });
    });

    it("caps 4-byte lengths at 64 MiB by default", () => {
      const decoder = new FrameDecoder({ lengthBytes: 4 });
      assert.throws(() => decoder.push(fromHex("00 01 04 00 00 01")), { name: "FrameTooLargeError", message: /67108865 exceeds limit 67108864/ });
    });

    it("emits the frames before the offending header, then throws", () => {
      const decoder = new FrameDecoder({ maxBody: 4 });
      const seen: string[] = [];
      const wire = concat([encodeFrame(1, utf8.encode("ok")), fromHex("00 02 00 05")]);
      assert.throws(() => decoder.decode(wire, (id, body) => seen.push(`${id}:${toHex(body)}`)), FrameTooLargeError);
      assert.deepEqual(seen, ["1:6f 6b"]);
    });

    it("push returns the frames before the offending header and throws on the next call", () => {
      const decoder = new FrameDecoder({ maxBody: 4 });
      const wire = concat([encodeFrame(1, utf8.encode("ok")), fromHex("00 02 00 05")]);
      assert.deepEqual(describeFrames(decoder.push(wire)), ["1:6f 6b"]);
      assert.throws(() => decoder.push(new Uint8Array(0)), FrameTooLargeError);
      assert.throws(() => decoder.push(new Uint8Array(0)), DecoderFailedError);
    });

    it("refuses further input after a failure, naming the cause", () => {
      const decoder = new FrameDecoder({ maxBody: 0 });
      assert.throws(() => decoder.push(fromHex("00 01 00 01")), FrameTooLargeError);
      assert.throws(() => decoder.push(fromHex("00")), (error: unknown) => {
        assert.ok(error instanceof DecoderFailedError);
        assert.match(error.message, /^Cannot decode: decoder failed earlier \(Cannot accept frame: announced length 1 exceeds limit 0\)/);
        assert.ok(error.cause instanceof FrameTooLargeError);
        return true;
      });
      assert.throws(() => decoder.finish(), DecoderFailedError);
    });
  });

  describe("finish", () => {
    it("succeeds on a frame boundary", () => {
      const decoder = new FrameDecoder();
      decoder.push(STREAM);
      decoder.finish();
    });

    it("reports leftover header bytes instead of dropping them", () => {
      const decoder = new FrameDecoder();
      decoder.push(fromHex("03 e9 00"));
      assert.throws(() => decoder.finish(), (error: unknown) => {
        assert.ok(error instanceof IncompleteFrameError);
        assert.equal(error.received, 3);
        assert.equal(error.expected, undefined);
        assert.equal(error.message, "Cannot finish stream: 3 bytes remain of an incomplete frame header");
        return true;
      });
    });

    it("reports a body cut short with the bytes received and expected", () => {
      const decoder = new FrameDecoder();
      decoder.push(fromHex("00 01 00 03 61"));
      assert.throws(() => decoder.finish(), { name: "IncompleteFrameError", received: 5, expected: 7 });
    });
  });

  it("propagates an error thrown by the frame callback and then refuses input", () => {
    const decoder = new FrameDecoder();
    const boom = new Error("boom");
    assert.throws(() => decoder.decode(STREAM, () => {
      throw boom;
    }), boom);
    assert.throws(() => decoder.push(STREAM), DecoderFailedError);
  });

  it("refuses to be fed from inside its own frame callback", () => {
    const decoder = new FrameDecoder();
    assert.throws(() => decoder.decode(STREAM, () => decoder.push(STREAM)), /inside a frame callback/);
  });

  describe("copy cost", () => {
    it("copies a 64 KiB body fed one byte at a time exactly once (linear, not quadratic)", () => {
      const body = new Uint8Array(65535);
      for (let i = 0; i < body.length; i++) body[i] = i * 7;
      const wire = encodeFrame(3, body);
      const decoder = new FrameDecoder();
      let got: Uint8Array | undefined;
      for (let i = 0; i < wire.length; i++) {
        decoder.decode(wire.subarray(i, i + 1), (_id, b) => {
          got = b;
        });
      }
      assert.ok(got);
      assert.equal(decoder.bytesCopied, wire.length, "each byte of the frame copied once, header included");
      assert.deepEqual(got, body);
    });

    it("copies only the bytes of frames that straddle 1460-byte chunks", () => {
      const encoder = new FrameEncoder();
      const frames = Array.from({ length: 200 }, (_, i) => encoder.encode(i, new Uint8Array(100 + (i % 50))));
      const wire = concat(frames);
      const decoder = new FrameDecoder();
      let count = 0;
      for (let i = 0; i < wire.length; i += 1460) decoder.decode(wire.subarray(i, i + 1460), () => count++);
      assert.equal(count, 200);
      const straddling = Math.ceil(wire.length / 1460) - 1;
      assert.ok(decoder.bytesCopied <= straddling * 154, `copied ${decoder.bytesCopied} bytes for ${straddling} cuts`);
      assert.ok(decoder.bytesCopied < wire.length / 5);
    });

    it("copies a 3 MiB body at most twice per byte while growing it from an untrusted header", () => {
      const body = new Uint8Array(3 * 1024 * 1024).fill(9);
      const wire = encodeFrame(1, body, { lengthBytes: 4 });
      const decoder = new FrameDecoder({ lengthBytes: 4 });
      const got: Uint8Array[] = [];
      for (let i = 0; i < wire.length; i += 65536) decoder.decode(wire.subarray(i, i + 65536), (_id, b) => got.push(b));
      assert.equal(got.length, 1);
      assert.equal(got[0]!.length, body.length);
      assert.ok(got[0]!.every((b) => b === 9));
      assert.ok(decoder.bytesCopied <= 2 * wire.length, `copied ${decoder.bytesCopied} of ${wire.length}`);
    });
  });

  describe("recycleBodies", () => {
    /**
     * Two 3,000-byte frames filled with `first` and `first + 1`, in chunks that
     * split each body, the second one starting only after the first is complete.
     */
    function splitPair(first: number): Uint8Array[] {
      const wire = concat([encodeFrame(1, new Uint8Array(3000).fill(first)), encodeFrame(2, new Uint8Array(3000).fill(first + 1))]);
      return [wire.subarray(0, 1000), wire.subarray(1000, 3004), wire.subarray(3004, 4000), wire.subarray(4000)];
    }

    function intact(bodies: readonly Uint8Array[]): void {
      bodies.forEach((body, i) => assert.ok(body.length === 3000 && body.every((byte) => byte === i), `body ${i} intact`));
    }

    it("reuses a split body's buffer once it is released", () => {
      const decoder = recyclingDecoder(undefined, { recycleBodies: true });
      const bodies: Uint8Array[] = [];
      for (const chunk of splitPair(0)) {
        for (const frame of decoder.push(chunk)) bodies.push(frame.body);
        decoder.releaseBodies();
      }
      assert.equal(bodies.length, 2);
      assert.ok(bodies[1]!.buffer === bodies[0]!.buffer, "the second body was reassembled in the first one's buffer");
      assert.ok(bodies[1]!.every((byte) => byte === 1));
    });

    it("never reuses a body that was not released right after the decode that produced it", () => {
      const decoder = recyclingDecoder(undefined, { recycleBodies: true });
      const kept: Uint8Array[] = [];
      for (let round = 0; round < 10; round++) {
        const chunks = splitPair(round * 2);
        for (const [i, chunk] of chunks.entries()) {
          for (const frame of decoder.push(chunk)) kept.push(frame.body);
          // Released only after decodes that completed no body: too late for the ones kept.
          if (i === 2) decoder.releaseBodies();
        }
      }
      intact(kept);
      assert.equal(new Set(kept.map((body) => body.buffer)).size, kept.length, "every body has memory of its own");
    });

    it("leaves every body alone without the option, and small split bodies with it", () => {
      const plain = new FrameDecoder();
      const bodies: Uint8Array[] = [];
      for (let round = 0; round < 4; round++) {
        for (const chunk of splitPair(round * 2)) {
          for (const frame of plain.push(chunk)) bodies.push(frame.body);
          plain.releaseBodies(); // does nothing without recycleBodies
        }
      }
      intact(bodies);
      const small = recyclingDecoder(undefined, { recycleBodies: true });
      const wire = concat([encodeFrame(1, new Uint8Array(500).fill(1)), encodeFrame(2, new Uint8Array(500).fill(2))]);
      const [a] = small.push(wire.subarray(0, 300)).concat(small.push(wire.subarray(300, 504)));
      small.releaseBodies();
      small.push(wire.subarray(504, 700));
      const [b] = small.push(wire.subarray(700));
      assert.ok(a!.body.every((byte) => byte === 1), "a small body stays on the slab, never reused");
      assert.ok(b!.body.every((byte) => byte === 2));
    });
  });
});

describe("FrameDecoder reuseViews", () => {
  const options = { recycleBodies: true, reuseViews: true };

  /** Write `wire` at the start of `memory` and decode it from there; returns the bodies, in order. */
  function decodeIn(decoder: FrameDecoder, memory: ArrayBuffer, wire: Uint8Array): Uint8Array[] {
    const chunk = new Uint8Array(memory, 0, wire.length);
    chunk.set(wire);
    const bodies: Uint8Array[] = [];
    decoder.decode(chunk, (_id, body) => bodies.push(body));
    return bodies;
  }

  function wireOf(...bodies: number[][]): Uint8Array {
    return concat(bodies.map((body, i) => encodeFrame(i + 1, new Uint8Array(body))));
  }

  it("gives frames at the same place in reused memory the same body objects, holding the new bytes", () => {
    const decoder = recyclingDecoder(undefined, options);
    const memory = new ArrayBuffer(256);
    decodeIn(decoder, memory, wireOf([1, 1], [2, 2, 2]));
    decoder.releaseBodies();
    const second = decodeIn(decoder, memory, wireOf([3, 3], [4, 4, 4]));
    decoder.releaseBodies();
    const third = decodeIn(decoder, memory, wireOf([5, 5], [6, 6, 6]));
    assert.equal(third[0], second[0], "frame 1: same object");
    assert.equal(third[1], second[1], "frame 2: same object");
    assert.deepEqual(third.map((body) => [...body]), [[5, 5], [6, 6, 6]]);
  });

  it("cuts new views when the bodies were not released, or a frame moved or changed length", () => {
    const decoder = recyclingDecoder(undefined, options);
    const memory = new ArrayBuffer(256);
    decodeIn(decoder, memory, wireOf([1], [2]));
    decoder.releaseBodies();
    const kept = decodeIn(decoder, memory, wireOf([1], [2]));
    // Not released: the caller may still use `kept`.
    const next = decodeIn(decoder, memory, wireOf([3], [4]));
    assert.notEqual(next[0], kept[0]);
    assert.notEqual(next[1], kept[1]);
    decoder.releaseBodies();
    // Frame 1 grew: frame 1 has another length, frame 2 another place.
    const moved = decodeIn(decoder, memory, wireOf([5, 5], [6]));
    assert.notEqual(moved[0], next[0]);
    assert.notEqual(moved[1], next[1]);
    assert.deepEqual(moved.map((body) => [...body]), [[5, 5], [6]]);
  });

  it("never reuses across buffers, nor without recycleBodies", () => {
    const decoder = recyclingDecoder(undefined, options);
    const wire = wireOf([1], [2]);
    const seen = new Set<Uint8Array>();
    for (let i = 0; i < 4; i++) {
      for (const body of decodeIn(decoder, new ArrayBuffer(64), wire)) seen.add(body);
      decoder.releaseBodies();
    }
    assert.equal(seen.size, 8, "fresh memory, fresh views");
    const plain = recyclingDecoder(undefined, { reuseViews: true });
    const memory = new ArrayBuffer(64);
    const a = decodeIn(plain, memory, wire);
    plain.releaseBodies();
    const b = decodeIn(plain, memory, wire);
    plain.releaseBodies();
    const c = decodeIn(plain, memory, wire);
    assert.ok(a[0] !== b[0] && b[0] !== c[0], "reuseViews does nothing without recycleBodies");
  });

  it("starts reusing within a few dozen chunks once the memory stops changing after a long run of fresh memory", () => {
    const decoder = recyclingDecoder(undefined, options);
    const wire = wireOf([1], [2]);
    for (let i = 0; i < 100; i++) {
      decodeIn(decoder, new ArrayBuffer(64), wire);
      decoder.releaseBodies();
    }
    const memory = new ArrayBuffer(64);
    let previous: Uint8Array | undefined;
    let firstReuse = -1;
    for (let i = 0; i < 60 && firstReuse < 0; i++) {
      const [body] = decodeIn(decoder, memory, wire);
      decoder.releaseBodies();
      if (body === previous) firstReuse = i;
      previous = body;
    }
    assert.ok(firstReuse > 0 && firstReuse <= 40, `reused from chunk ${firstReuse} on`);
  });

  it("keeps the views of the first 64 frames of a chunk only", () => {
    const decoder = recyclingDecoder(undefined, options);
    const memory = new ArrayBuffer(4096);
    const wire = wireOf(...Array.from({ length: 70 }, (_, i) => [i]));
    decodeIn(decoder, memory, wire);
    decoder.releaseBodies();
    const second = decodeIn(decoder, memory, wire);
    decoder.releaseBodies();
    const third = decodeIn(decoder, memory, wire);
    assert.equal(third[63], second[63]);
    assert.notEqual(third[64], second[64]);
    assert.deepEqual(third.map((body) => body[0]), Array.from({ length: 70 }, (_, i) => i));
  });

  const title = "holds on to no chunk that came in fresh memory";
  it(title, { skip: noGcReason }, () =>
    inReachabilityTrials(title, async () => {
      const decoder = recyclingDecoder(undefined, options);
      const refs: WeakRef<ArrayBuffer>[] = [];
      // Each chunk in memory of its own, referenced from here only weakly.
      (() => {
        for (let i = 0; i < 3; i++) {
          const memory = new ArrayBuffer(64);
          refs.push(new WeakRef(memory));
          decodeIn(decoder, memory, wireOf([i], [i]));
          decoder.releaseBodies();
        }
      })();
      await collectGarbage();
      assert.deepEqual(refs.map((ref) => ref.deref() === undefined), [true, true, true], "every chunk collected");
    }));
});
