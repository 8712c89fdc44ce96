/**
 * Differential fuzzing of {@link FrameDecoder} against a reference model: the
 * obvious, slow decoder that keeps every byte in one array and parses it from
 * the start. Random layouts, random streams (valid frames, garbage, frames then
 * garbage, oversized headers), random chunking.
 *
 * @module
 */

import { DecoderFailedError, FrameTooLargeError, IncompleteFrameError } from "../src/errors.ts";
import { FrameDecoder } from "../src/frame_decoder.ts";
import type { ByteOrder, IdBytes, LengthBytes } from "../src/frame_layout.ts";
import { concat, pattern, toHex } from "./_bytes.ts";
import { SeededRandom } from "./_seeded_random.ts";

interface Layout {
  idBytes: IdBytes;
  lengthBytes: LengthBytes;
  byteOrder: ByteOrder;
  maxBody: number;
}

/** A frame the model predicts, with the stream offset at which it completes. */
interface ModelFrame {
  id: number;
  body: Uint8Array;
  end: number;
}

/** What the reference model predicts for a whole stream. */
interface ModelResult {
  frames: ModelFrame[];
  /** The oversized header, with the offset at which it completes. */
  error: { at: number; length: number; limit: number } | undefined;
  /** Bytes of an unfinished frame left at the end (no error only). */
  leftover: number;
  /** Whole size of the unfinished frame when its header is complete. */
  leftoverExpected: number | undefined;
}

function readUnsigned(bytes: Uint8Array, at: number, width: number, little: boolean): number {
  let value = 0;
  for (let i = 0; i < width; i++) {
    const byte = bytes[little ? at + width - 1 - i : at + i]!;
    value = value * 256 + byte;
  }
  return value;
}

function writeUnsigned(out: Uint8Array, at: number, width: number, little: boolean, value: number): void {
  let rest = value;
  for (let i = width - 1; i >= 0; i--) {
    out[little ? at + (width - 1 - i) : at + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

function header(layout: Layout, id: number, length: number): Uint8Array {
  const out = new Uint8Array(layout.idBytes + layout.lengthBytes);
  const little = layout.byteOrder === "little";
  writeUnsigned(out, 0, layout.idBytes, little, id);
  writeUnsigned(out, layout.idBytes, layout.lengthBytes, little, length);
  return out;
}

/**
 * The reference model: parse the whole stream from the start, header by
 * header. Slow and obvious on purpose.
 */
export function referenceDecode(layout: Layout, stream: Uint8Array): ModelResult {
  const headerSize = layout.idBytes + layout.lengthBytes;
  const little = layout.byteOrder === "little";
  const frames: ModelFrame[] = [];
  let pos = 0;
  for (;;) {
    const remaining = stream.length - pos;
    if (remaining < headerSize || remaining === 0) {
      return { frames, error: undefined, leftover: remaining, leftoverExpected: undefined };
    }
    const id = readUnsigned(stream, pos, layout.idBytes, little);
    const length = readUnsigned(stream, pos + layout.idBytes, layout.lengthBytes, little);
    if (length > layout.maxBody) {
      return { frames, error: { at: pos + headerSize, length, limit: layout.maxBody }, leftover: 0, leftoverExpected: undefined };
    }
    if (remaining < headerSize + length) {
      return { frames, error: undefined, leftover: remaining, leftoverExpected: headerSize + length };
    }
    frames.push({ id, body: stream.slice(pos + headerSize, pos + headerSize + length), end: pos + headerSize + length });
    pos += headerSize + length;
  }
}

function randomLayout(rng: SeededRandom): Layout {
  const idBytes = rng.pick<IdBytes>([0, 1, 2, 4]);
  const lengthBytes = rng.pick<LengthBytes>([1, 2, 4]);
  const byteOrder = rng.pick<ByteOrder>(["big", "little"]);
  const limit = 2 ** (8 * lengthBytes) - 1;
  const roll = rng.int(0, 9);
  const maxBody = roll < 5
    ? rng.int(0, Math.min(limit, 24))
    : roll < 7
    ? rng.int(0, Math.min(limit, 6000))
    : roll < 9
    ? Math.floor(rng.next() * (limit + 1))
    : limit;
  return { idBytes, lengthBytes, byteOrder, maxBody };
}

function randomBodyLength(rng: SeededRandom, layout: Layout): number {
  const cap = Math.min(layout.maxBody, rng.int(0, 9) === 0 ? 5000 : 40);
  return rng.int(0, cap);
}

function validFrame(rng: SeededRandom, layout: Layout, big: boolean): Uint8Array {
  const maxId = layout.idBytes === 0 ? 0 : 2 ** (8 * layout.idBytes) - 1;
  const id = rng.int(0, 3) === 0 ? maxId : Math.floor(rng.next() * (maxId + 1));
  // A body over the decoder's 1 MiB eager limit exercises its growing buffer.
  const length = big ? rng.int(1024 * 1024 + 1, Math.min(layout.maxBody, 2 * 1024 * 1024 + 17)) : randomBodyLength(rng, layout);
  const body = length > 4096 ? pattern(length, rng.int(0, 0xffff)) : rng.bytes(length);
  return concat([header(layout, id, length), body]);
}

function randomStream(rng: SeededRandom, layout: Layout): { stream: Uint8Array; kind: string } {
  const frames = (count: number): Uint8Array[] => {
    const out: Uint8Array[] = [];
    const bigAllowed = layout.lengthBytes === 4 && layout.maxBody > 1024 * 1024 + 1;
    for (let i = 0; i < count; i++) out.push(validFrame(rng, layout, bigAllowed && rng.int(0, 400) === 0));
    return out;
  };
  const garbage = (): Uint8Array => rng.bytes(rng.int(1, 64));
  const limit = 2 ** (8 * layout.lengthBytes) - 1;
  switch (rng.int(0, 5)) {
    case 0:
      return { stream: concat(frames(rng.int(0, 12))), kind: "valid frames" };
    case 1:
      return { stream: garbage(), kind: "garbage" };
    case 2:
      return { stream: concat([...frames(rng.int(1, 8)), garbage()]), kind: "frames then garbage" };
    case 3: {
      // Frames, then a header announcing too much (when the layout allows one), then anything.
      const parts = frames(rng.int(0, 6));
      if (layout.maxBody < limit) {
        const length = rng.int(0, 1) === 0 ? layout.maxBody + 1 : layout.maxBody + 1 + Math.floor(rng.next() * (limit - layout.maxBody));
        parts.push(header(layout, 0, length));
      }
      parts.push(rng.bytes(rng.int(0, 16)));
      return { stream: concat(parts), kind: "frames then oversized header" };
    }
    case 4: {
      // Frames, then one cut short.
      const parts = frames(rng.int(0, 6));
      const last = validFrame(rng, layout, false);
      parts.push(last.subarray(0, rng.int(0, last.length)));
      return { stream: concat(parts), kind: "frames then a truncated frame" };
    }
    default:
      return { stream: concat([...frames(rng.int(0, 4)), garbage(), ...frames(rng.int(0, 4))]), kind: "frames around garbage" };
  }
}

function randomChunks(rng: SeededRandom, stream: Uint8Array): { chunks: Uint8Array[]; kind: string } {
  const mode = stream.length > 100_000 ? rng.int(1, 2) : rng.int(0, 2);
  if (mode === 0) {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i++) chunks.push(stream.subarray(i, i + 1));
    return { chunks, kind: "1-byte chunks" };
  }
  if (mode === 1) {
    const chunks: Uint8Array[] = [];
    const maxCut = stream.length > 100_000 ? rng.pick([4096, 300_000]) : rng.pick([3, 8, 32, 4096]);
    let pos = 0;
    while (pos < stream.length) {
      if (rng.int(0, 15) === 0) chunks.push(new Uint8Array(0));
      const size = rng.int(1, maxCut);
      chunks.push(stream.subarray(pos, pos + size));
      pos += size;
    }
    return { chunks, kind: `random cuts (up to ${maxCut})` };
  }
  return { chunks: [stream], kind: "one chunk" };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function short(bytes: Uint8Array): string {
  return bytes.length > 48 ? `${toHex(bytes.subarray(0, 48))} ... (${bytes.length} bytes)` : toHex(bytes);
}

/** A frame as delivered by the decoder, with its body view kept as given. */
interface Delivered {
  id: number;
  body: Uint8Array;
  copy: Uint8Array;
}

/**
 * Run `rounds` rounds of differential fuzzing of {@link FrameDecoder} against
 * the reference model, seeded with `seed`.
 *
 * Checked, per round: the same frames in the same order (ids and bodies), each
 * delivered by the chunk that completes it; body views still intact at the
 * end; `bufferedBytes` and `inFrame` after every chunk; a
 * `FrameTooLargeError` (same `length` and `limit`) thrown by the chunk that
 * completes the oversized header, with the frames before it delivered first;
 * `finish()` throwing `IncompleteFrameError` (same `received`, `expected`)
 * exactly when the model has bytes left over; `bytesCopied` never more than
 * twice the bytes fed; after a failure, `decode` throws `DecoderFailedError`.
 * Rounds also use `push` (which defers an error that follows frames) and frame
 * callbacks that throw.
 *
 * @param seed Seed of the random stream (replays the run exactly).
 * @param rounds How many layouts and streams to try.
 * @throws {Error} On the first divergence; the message names the seed and the round.
 */
export function fuzzDecoder(seed: number, rounds: number): void {
  const rng = new SeededRandom(seed);
  for (let round = 0; round < rounds; round++) {
    const layout = randomLayout(rng);
    const { stream, kind } = randomStream(rng, layout);
    const { chunks, kind: chunking } = randomChunks(rng, stream);
    const api = rng.int(0, 3) === 0 ? "push" : "decode";
    const model = referenceDecode(layout, stream);
    // Sometimes the frame callback throws at one frame (decode only).
    const throwAt = api === "decode" && model.frames.length > 0 && rng.int(0, 7) === 0
      ? rng.int(0, model.frames.length - 1)
      : -1;
    const context = (): string =>
      `seed ${seed} round ${round}: layout ${JSON.stringify(layout)}, ${kind}, ${chunking}, ${api}` +
      (throwAt >= 0 ? `, callback throws at frame ${throwAt}` : "") + `, stream ${short(stream)}`;
    const fail = (what: string): never => {
      throw new Error(`Decoder fuzz divergence at ${context()}: ${what}`);
    };
    try {
      checkRound(layout, stream, chunks, api, model, throwAt, fail);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("Decoder fuzz divergence")) throw error;
      fail(`unexpected ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    }
  }
}

class CallbackFailure extends Error {
  constructor() {
    super("callback failure");
    this.name = "CallbackFailure";
  }
}

function checkRound(
  layout: Layout,
  stream: Uint8Array,
  chunks: Uint8Array[],
  api: "push" | "decode",
  model: ModelResult,
  throwAt: number,
  fail: (what: string) => never,
): void {
  const decoder = new FrameDecoder(layout);
  const delivered: Delivered[] = [];
  /** How many model frames complete at or before `offset`. */
  let due = 0;
  const dueUpTo = (offset: number): number => {
    while (due < model.frames.length && model.frames[due]!.end <= offset) due++;
    return due;
  };
  /** Frames already compared (only new deliveries are compared again). */
  let verified = 0;
  /** Check that exactly the model's first `count` frames were delivered. */
  const compare = (count: number, where: string): void => {
    if (delivered.length !== count) {
      fail(`${where}: ${delivered.length} frames delivered, model expects ${count}`);
    }
    for (let i = verified; i < count; i++) {
      const got = delivered[i]!;
      const want = model.frames[i]!;
      if (got.id !== want.id) fail(`${where}: frame ${i} has id ${got.id}, model expects ${want.id}`);
      if (!sameBytes(got.copy, want.body)) {
        fail(`${where}: frame ${i} body ${short(got.copy)}, model expects ${short(want.body)}`);
      }
    }
    verified = count;
  };
  const headerSize = layout.idBytes + layout.lengthBytes;
  // The chunk being decoded, for the zero-copy check (decode API only).
  let current: { chunk: Uint8Array; start: number } | undefined;
  const onFrame = (id: number, body: Uint8Array): void => {
    const frame = model.frames[delivered.length];
    if (current !== undefined && frame !== undefined) {
      // A frame wholly in this chunk is given as the chunk's view at its place, not a copy.
      const { chunk, start } = current;
      const whole = frame.end - frame.body.length - headerSize >= start && frame.end <= start + chunk.length;
      if (whole && (body.buffer !== chunk.buffer || body.byteOffset !== chunk.byteOffset + frame.end - body.length - start)) {
        fail(`frame ${delivered.length}: a body wholly in the chunk is not the chunk's view at the frame's place`);
      }
    }
    delivered.push({ id, body, copy: body.slice() });
    if (delivered.length - 1 === throwAt) throw new CallbackFailure();
  };
  const expectFailed = (where: string): void => {
    if (!decoder.failed) fail(`${where}: decoder not marked failed`);
    try {
      decoder.decode(new Uint8Array([0]), () => fail(`${where}: a failed decoder delivered a frame`));
    } catch (error) {
      if (!(error instanceof DecoderFailedError)) fail(`${where}: decode after failure threw ${String(error)}, not DecoderFailedError`);
      return;
    }
    fail(`${where}: decode after failure did not throw`);
  };

  let fed = 0;
  let offset = 0;
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c]!;
    const start = offset;
    offset += chunk.length;
    const where = `chunk ${c} (bytes ${start}..${offset})`;
    const errorHere = model.error !== undefined && model.error.at > start && model.error.at <= offset;
    const throwHere = throwAt >= 0 && model.frames[throwAt]!.end > start && model.frames[throwAt]!.end <= offset &&
      (model.error === undefined || model.frames[throwAt]!.end <= model.error.at);
    fed += chunk.length;
    let thrown: unknown = undefined;
    let threw = false;
    try {
      if (api === "decode") {
        current = { chunk, start };
        decoder.decode(chunk, onFrame);
      }
      else for (const frame of decoder.push(chunk)) onFrame(frame.id, frame.body);
    } catch (error) {
      thrown = error;
      threw = true;
    }
    if (decoder.bytesCopied > 2 * fed) fail(`${where}: bytesCopied ${decoder.bytesCopied} exceeds twice the ${fed} bytes fed`);

    if (throwHere) {
      if (!(thrown instanceof CallbackFailure)) fail(`${where}: the callback's error did not propagate (got ${String(thrown)})`);
      compare(throwAt + 1, where);
      expectFailed(where);
      return;
    }
    if (errorHere) {
      let error = thrown;
      if (!threw && api === "push") {
        // push returns the frames before the bad header and throws on the next call.
        if (delivered.length === 0) fail(`${where}: push swallowed the error without returning frames`);
        try {
          decoder.push(new Uint8Array(0));
        } catch (deferred) {
          error = deferred;
          threw = true;
        }
      }
      if (!threw) fail(`${where}: no FrameTooLargeError; model expects one (length ${model.error!.length})`);
      if (!(error instanceof FrameTooLargeError)) fail(`${where}: threw ${String(error)}, model expects FrameTooLargeError`);
      if (error.length !== model.error!.length || error.limit !== model.error!.limit) {
        fail(`${where}: FrameTooLargeError(${error.length}, ${error.limit}), model expects (${model.error!.length}, ${model.error!.limit})`);
      }
      compare(model.frames.length, `${where}, frames before the oversized header`);
      expectFailed(where);
      return;
    }
    if (threw) fail(`${where}: threw ${thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown)}; model expects none`);
    const count = dueUpTo(offset);
    compare(count, where);
    const lastEnd = count === 0 ? 0 : model.frames[count - 1]!.end;
    if (decoder.bufferedBytes !== offset - lastEnd) {
      fail(`${where}: bufferedBytes ${decoder.bufferedBytes}, model holds ${offset - lastEnd}`);
    }
    if (decoder.inFrame !== offset > lastEnd) fail(`${where}: inFrame ${decoder.inFrame}, model says ${offset > lastEnd}`);
  }
  if (offset !== stream.length) fail(`chunking covered ${offset} of ${stream.length} bytes`);
  if (model.error !== undefined) fail(`stream end: the model's FrameTooLargeError was never thrown`);
  compare(model.frames.length, "stream end");

  // Body views stay valid: nothing the decoder did later overwrote them.
  for (let i = 0; i < delivered.length; i++) {
    if (!sameBytes(delivered[i]!.body, delivered[i]!.copy)) fail(`frame ${i}'s body was overwritten after delivery`);
  }

  let finishError: unknown = undefined;
  let finishThrew = false;
  try {
    decoder.finish();
  } catch (error) {
    finishError = error;
    finishThrew = true;
  }
  if (model.leftover === 0) {
    if (finishThrew) fail(`finish threw ${String(finishError)}; the model has no leftover bytes`);
    return;
  }
  if (!(finishError instanceof IncompleteFrameError)) {
    fail(`finish ${finishThrew ? `threw ${String(finishError)}` : "returned"}; model expects IncompleteFrameError (${model.leftover} bytes left)`);
  }
  if (finishError.received !== model.leftover || finishError.expected !== model.leftoverExpected) {
    fail(
      `IncompleteFrameError(received ${finishError.received}, expected ${finishError.expected}), model expects ` +
        `(${model.leftover}, ${model.leftoverExpected})`,
    );
  }
  expectFailed("after finish");
}
