/**
 * Streaming frame decoder: feed it whatever chunks TCP delivers, get every
 * complete frame, in order.
 *
 * @module
 */

import { givePooled, POOL_MAX_SIZE, takePooled } from "./_buffer_pool.ts";
import { ByteSlab } from "./_byte_slab.ts";
import { readField } from "./_header_fields.ts";
import { DecoderFailedError, FrameTooLargeError, IncompleteFrameError } from "./errors.ts";
import { FrameLayout, type FrameLayoutOptions } from "./frame_layout.ts";

/** One decoded frame. */
export interface Frame {
  /** Message id (0 for length-only layouts). */
  readonly id: number;
  /** Body bytes. See {@link FrameDecoder} for how long a body view stays valid. */
  readonly body: Uint8Array;
}

/**
 * Memory reuse for the server's own decoders (`borrowBodies`): internal, set
 * with {@link recyclingDecoder}; a decoder made with `new FrameDecoder` never
 * reuses memory it handed out.
 */
export interface FrameDecoderOptions {
  /**
   * Reuse the memory of bodies that spanned chunks: such a body is reassembled
   * in a pooled buffer, which goes back to the pool when you call
   * {@link FrameDecoder.releaseBodies} after a `decode` or `push` (and is left
   * to the garbage collector if you do not, before the next one). For
   * callers that also reuse their read buffers and know when every body they
   * were given is done with, as the server's `borrowBodies` option does.
   * @default {false}
   */
  recycleBodies?: boolean;
  /**
   * With `recycleBodies`, for callers that read every chunk into memory they
   * reuse (a read buffer handed back once its frames are done with): when a
   * chunk lies in the same `ArrayBuffer` as the previous one and
   * {@link FrameDecoder.releaseBodies} was called in between, the n-th whole
   * frame of the chunk, when it sits at the same place with the same length
   * as the n-th frame of an earlier chunk in that memory (usually the
   * previous one), gets that frame's body object again, not a new view. Same
   * bytes, no allocation: a steady stream of equal frames then cuts no view
   * at all (docs/performance.md#buffers-and-memory).
   * The views of the first 64 frames of a chunk are kept for that, and only
   * once two chunks in a row came in the same memory (which the caller keeps
   * anyway), so fresh chunks are never held on to.
   * @default {false}
   */
  reuseViews?: boolean;
}

/**
 * Called once per decoded frame, in stream order, with `this` set to the
 * `thisArg` given to {@link FrameDecoder.decode}.
 *
 * @param id Message id.
 * @param body Body bytes (a view; see {@link FrameDecoder} for its lifetime).
 */
export type FrameCallback<This = undefined> = (this: This, id: number, body: Uint8Array) => void;

/**
 * Bodies larger than this are not allocated whole from the header alone: the
 * buffer starts at this size and doubles as bytes arrive, so a peer cannot make
 * the decoder reserve a huge body it never sends. Only reachable with 4-byte
 * length fields.
 */
const EAGER_BODY_LIMIT = 1024 * 1024;

/**
 * Bodies up to this size that span chunks are carved out of a shared slab
 * instead of getting an `ArrayBuffer` each: one small off-heap allocation per
 * straddling frame costs more than decoding the frame (V8 and JSC alike).
 * Slab space is handed out once and never rewritten, so a body stays valid for
 * as long as it is referenced; a kept body keeps its 64 KiB slab alive.
 */
const SLAB_MAX_BODY = 4096;
const bodySlab = new ByteSlab(64 * 1024, SLAB_MAX_BODY);

/**
 * With `recycleBodies`, split bodies larger than this are reassembled in
 * pooled buffers; smaller ones stay on the slab, where one costs little.
 */
const RECYCLE_ABOVE = 1024;

/**
 * With `reuseViews`, the views of at most this many frames of a chunk are kept
 * for the next chunk in the same memory (a pipelined window rarely holds more).
 */
const REUSED_VIEWS_MAX = 64;

/**
 * With `reuseViews`: after this many chunks in a row each in memory of its
 * own, only every `PROBE_EVERY`-th chunk's memory is remembered to compare
 * the next one with.
 */
const FRESH_BEFORE_PROBING = 4;
const PROBE_EVERY = 32;

const HEAD = 0;
const BODY = 1;

const EMPTY = new Uint8Array(0);

/** The view lists of a decoder that has kept no views (made on the first kept). */
const NO_VIEWS: Uint8Array[] = Object.freeze([]) as unknown as Uint8Array[];
const NO_OFFSETS: number[] = Object.freeze([]) as unknown as number[];

let setRecycling: (decoder: FrameDecoder, options: FrameDecoderOptions) => void;

/**
 * A two-state machine (`Head`, `Body(remaining)`) that turns a byte stream into
 * frames. It reassembles across any split (down to one byte per chunk) and emits
 * every complete frame of a chunk, in order.
 *
 * ```text
 *  chunks:  [03 e9 00 02 68]  [69 00 07 00 00 00 07]
 *  frames:  (1001, "hi")                (7, "")  (7, ...waits for its header)
 * ```
 *
 * **Body lifetime.** When a frame lies wholly inside one chunk, its body is a
 * view of that chunk's memory (a plain `Uint8Array`, even for a `Buffer`
 * chunk), not a copy. It stays valid as long as the
 * chunk's bytes are not overwritten: if you reuse or mutate the buffer you
 * passed in (a pooled read buffer, say), copy any body you keep beyond that
 * point with `body.slice()`. A frame that spans chunks is copied once into
 * memory of its own, sized from its header, that the decoder never rewrites
 * (small bodies share a slab with other bodies, as Node's `Buffer` pool does).
 * With {@link FrameDecoderOptions.recycleBodies} that memory is reused once
 * you call {@link FrameDecoder.releaseBodies}.
 *
 * **Cost.** Bytes of a frame split across chunks are copied once into that
 * frame's buffer; nothing is re-concatenated per chunk, so feeding a 64 KiB body
 * one byte at a time is linear work. `bytesCopied` counts it. (Bodies over
 * 1 MiB, possible only with 4-byte lengths, grow by doubling instead of being
 * reserved whole from an untrusted header: at most two copies per byte.)
 *
 * **Failure.** A header announcing more than `maxBody` throws
 * {@link FrameTooLargeError} before any body byte is buffered, after the frames
 * before it have been emitted. A frame callback that throws propagates its
 * error. Either way the decoder is then failed: further input throws
 * {@link DecoderFailedError}.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "@tlvkit/tlvkit";
 * const decoder = new FrameDecoder();
 * const bytes = encodeFrame(1001, new TextEncoder().encode("hi"));
 * decoder.push(bytes.subarray(0, 3)); // [] (only part of a header)
 * decoder.push(bytes.subarray(3));    // [{ id: 1001, body: Uint8Array(2) [104, 105] }]
 * ```
 */
export class FrameDecoder {
  /** The layout being decoded. */
  readonly layout: FrameLayout;

  readonly #idBytes: number;
  readonly #lengthBytes: number;
  readonly #littleEndian: boolean;
  readonly #headerSize: number;
  readonly #maxBody: number;
  /** The tlvkit wire format (2-byte id and length, big-endian): headers read inline. */
  readonly #wireLayout: boolean;

  #state: typeof HEAD | typeof BODY = HEAD;
  /** Header bytes of a header split across chunks (made on the first such header). */
  #head: Uint8Array = EMPTY;
  #headFill = 0;
  /** Id and length of the frame whose body is being collected. */
  #id = 0;
  #bodyLength = 0;
  #body: Uint8Array = EMPTY;
  #bodyFill = 0;

  #copied = 0;
  #recycle = false;
  /** Pooled buffers of bodies completed since the last decode, until released (made on the first). */
  #lent: Uint8Array[] | undefined;
  /** The pooled buffer #body is a view of, while a recycled body is collected. */
  #pooled: Uint8Array | undefined;
  /** `reuseViews` was asked for (with `recycleBodies`). */
  #reuseViews = false;
  /**
   * With `reuseViews`: the buffer the last chunk lay in, held only once two
   * chunks in a row lay in it (the caller reuses it); until then weakly.
   */
  #viewBuffer: ArrayBufferLike | undefined;
  #lastBuffer: WeakRef<ArrayBufferLike> | undefined;
  /** Chunks in a row that did not come in the memory of the one before. */
  #freshChunks = 0;
  /** The whole-frame bodies the last chunk in `#viewBuffer` was given, in order, and their offsets in it. */
  #views: Uint8Array[] = NO_VIEWS;
  #viewOffsets: number[] = NO_OFFSETS;
  /** `releaseBodies` was called since the last decode: `#views` may be handed out again. */
  #viewsReleased = false;
  #decoding = false;
  #failure: unknown = undefined;
  #failed = false;
  /** An error `push` caught after collecting frames; thrown on the next call. */
  #deferred: unknown = undefined;
  #hasDeferred = false;

  /**
   * Build a decoder for a layout.
   *
   * @param layout A layout or layout options; defaults to the tlvkit wire format.
   * @throws {RangeError} When a layout option is out of range.
   */
  constructor(layout?: FrameLayoutOptions | FrameLayout) {
    this.layout = FrameLayout.from(layout);
    this.#idBytes = this.layout.idBytes;
    this.#lengthBytes = this.layout.lengthBytes;
    this.#littleEndian = this.layout.littleEndian;
    this.#headerSize = this.layout.headerSize;
    this.#maxBody = this.layout.maxBody;
    this.#wireLayout = this.#idBytes === 2 && this.#lengthBytes === 2 && !this.#littleEndian;
  }

  /** Bytes of an incomplete frame held by the decoder (header included). */
  get bufferedBytes(): number {
    return this.#state === HEAD ? this.#headFill : this.#headerSize + this.#bodyFill;
  }

  /** `true` while a frame has started but not completed (for frame timeouts). */
  get inFrame(): boolean {
    return this.#state === BODY || this.#headFill > 0;
  }

  /** Total bytes copied into the decoder's own buffers since it was created. */
  get bytesCopied(): number {
    return this.#copied;
  }

  static {
    // The one way to switch memory reuse on: see recyclingDecoder.
    setRecycling = (decoder, options) => {
      decoder.#recycle = options.recycleBodies === true;
      decoder.#reuseViews = decoder.#recycle && options.reuseViews === true;
    };
  }

  /**
   * Nothing refers any more to the bodies the last `decode` or `push`
   * produced. The server's own decoders (with `borrowBodies`) then reuse the
   * memory of bodies that spanned chunks; on a decoder made with
   * `new FrameDecoder` it does nothing. Call it at most once per decode.
   *
   * @example
   * ```ts
   * import { FrameDecoder } from "@tlvkit/tlvkit";
   * const decoder = new FrameDecoder();
   * for (const frame of decoder.push(new Uint8Array([0, 7, 0, 1, 0x68]))) console.log(frame.id); // 7
   * decoder.releaseBodies(); // nothing is reused: the body above stays as it is
   * ```
   */
  releaseBodies(): void {
    this.#viewsReleased = true;
    const lent = this.#lent;
    if (lent === undefined || lent.length === 0) return;
    for (let i = 0; i < lent.length; i++) givePooled(lent[i]!);
    lent.length = 0;
  }

  /** `true` once the decoder has failed and refuses input. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Feed one chunk; `onFrame` is called for every frame it completes, in order,
   * before `decode` returns. Allocates nothing per frame that lies wholly in the
   * chunk. This is the fast path; {@link FrameDecoder.push} wraps it.
   *
   * @param chunk Bytes as read from the stream (any size, including 0).
   * @param onFrame Called with each frame's id and body.
   * @param thisArg `this` for `onFrame`, as with `Array.prototype.forEach`:
   *   one method serves many decoders without a closure for each.
   * @throws {FrameTooLargeError} When a header announces more than `maxBody`.
   * @throws {DecoderFailedError} When the decoder failed earlier.
   * @example
   * ```ts
   * import { FrameDecoder } from "@tlvkit/tlvkit";
   * const decoder = new FrameDecoder();
   * decoder.decode(new Uint8Array([0, 7, 0, 1, 0x61]), (id, body) => console.log(id, body.length)); // 7 1
   * ```
   */
  decode<This = undefined>(chunk: Uint8Array, onFrame: FrameCallback<This>, thisArg?: This): void {
    this.#enter();
    try {
      this.#decode(chunk, onFrame, thisArg as This);
    } catch (error) {
      this.#failed = true;
      this.#failure = error;
      throw error;
    } finally {
      this.#decoding = false;
    }
  }

  /**
   * Feed one chunk and get the frames it completes. If the chunk completes some
   * frames and then hits a bad header, those frames are returned and the error
   * is thrown by the next call.
   *
   * @param chunk Bytes as read from the stream.
   * @returns The completed frames, in order (often empty).
   * @throws {FrameTooLargeError} When a header announces more than `maxBody`.
   * @throws {DecoderFailedError} When the decoder failed earlier.
   * @example
   * ```ts
   * import { FrameDecoder } from "@tlvkit/tlvkit";
   * const frames = new FrameDecoder().push(new Uint8Array([0, 1, 0, 0, 0, 2, 0, 0]));
   * console.log(frames.map((f) => f.id)); // [1, 2]
   * ```
   */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    try {
      this.decode(chunk, (id, body) => {
        frames.push({ id, body });
      });
    } catch (error) {
      if (frames.length === 0) throw error;
      this.#deferred = error;
      this.#hasDeferred = true;
    }
    return frames;
  }

  /**
   * Declare the end of the stream. Throws when bytes of an incomplete frame
   * remain: they are never dropped silently.
   *
   * @throws {IncompleteFrameError} When the stream ended mid-frame.
   * @throws {DecoderFailedError} When the decoder failed earlier.
   * @example
   * ```ts
   * import { FrameDecoder } from "@tlvkit/tlvkit";
   * const decoder = new FrameDecoder();
   * decoder.push(new Uint8Array([0, 1, 0, 0]));
   * decoder.finish(); // fine: the stream ended on a frame boundary
   * ```
   */
  finish(): void {
    this.#enter();
    this.#decoding = false;
    if (!this.inFrame) return;
    const error = this.#state === HEAD
      ? new IncompleteFrameError(this.#headFill, undefined)
      : new IncompleteFrameError(this.#headerSize + this.#bodyFill, this.#headerSize + this.#bodyLength);
    this.#failed = true;
    this.#failure = error;
    throw error;
  }

  #enter(): void {
    if (this.#hasDeferred) {
      const error = this.#deferred;
      this.#hasDeferred = false;
      this.#deferred = undefined;
      throw error;
    }
    if (this.#failed) throw new DecoderFailedError(this.#failure);
    if (this.#decoding) {
      throw new Error("Cannot decode: called from inside a frame callback of the same decoder");
    }
    this.#decoding = true;
  }

  #decode<This>(chunk: Uint8Array, onFrame: FrameCallback<This>, thisArg: This): void {
    // Bodies of the previous decode that were not released may still be in use.
    if (this.#lent !== undefined && this.#lent.length > 0) this.#lent.length = 0;
    const headerSize = this.#headerSize;
    const idBytes = this.#idBytes;
    const lengthBytes = this.#lengthBytes;
    const little = this.#littleEndian;
    const wire = this.#wireLayout;
    const end = chunk.length;
    // Views are made with the constructor, not subarray, which costs more on
    // V8 and more still on JSC (docs/performance.md#bun).
    const buffer = chunk.buffer;
    const base = chunk.byteOffset;
    let pos = 0;
    // Frames of this chunk whose view may be the previous chunk's (see reuseViews), and their count.
    let views = this.#views;
    let offsets = this.#viewOffsets;
    let reusable = 0;
    let keep = 0;
    if (this.#reuseViews) {
      keep = this.#viewTarget(buffer);
      if (keep > 0 && views === NO_VIEWS) {
        views = this.#views = [];
        offsets = this.#viewOffsets = [];
      }
      if (keep > 0 && this.#viewsReleased) reusable = views.length;
      else if (views.length > 0) views.length = 0;
      this.#viewsReleased = false;
    }
    let frame = 0;

    while (pos < end) {
      if (this.#state === BODY) {
        // Body(remaining): copy what this chunk holds of it.
        const take = Math.min(this.#bodyLength - this.#bodyFill, end - pos);
        this.#append(chunk, pos, take);
        pos += take;
        if (this.#bodyFill < this.#bodyLength) return;
        const body = this.#body;
        this.#body = EMPTY;
        if (this.#pooled !== undefined) {
          (this.#lent ??= []).push(this.#pooled);
          this.#pooled = undefined;
        }
        this.#state = HEAD;
        onFrame.call(thisArg, this.#id, body);
        continue;
      }

      // Head.
      let id: number;
      let length: number;
      if (this.#headFill === 0 && end - pos >= headerSize) {
        // Whole header inside the chunk: read it in place.
        if (wire) {
          id = (chunk[pos]! << 8) | chunk[pos + 1]!;
          length = (chunk[pos + 2]! << 8) | chunk[pos + 3]!;
        } else {
          id = readField(chunk, pos, idBytes, little);
          length = readField(chunk, pos + idBytes, lengthBytes, little);
        }
        if (length > this.#maxBody) throw new FrameTooLargeError(length, this.#maxBody);
        pos += headerSize;
        if (end - pos >= length) {
          // Whole frame inside the chunk: hand out a view, copy nothing.
          const at = base + pos;
          let body: Uint8Array;
          if (frame < reusable && offsets[frame] === at && views[frame]!.length === length) {
            body = views[frame]!;
          } else {
            body = new Uint8Array(buffer, at, length);
            if (frame < keep) {
              views[frame] = body;
              offsets[frame] = at;
            }
          }
          frame++;
          pos += length;
          onFrame.call(thisArg, id, body);
          continue;
        }
      } else {
        // Header split across chunks: collect it in the small header buffer.
        const take = Math.min(headerSize - this.#headFill, end - pos);
        if (this.#head === EMPTY) this.#head = new Uint8Array(headerSize);
        this.#head.set(chunk.subarray(pos, pos + take), this.#headFill);
        this.#copied += take;
        this.#headFill += take;
        pos += take;
        if (this.#headFill < headerSize) return;
        this.#headFill = 0;
        id = readField(this.#head, 0, idBytes, little);
        length = readField(this.#head, idBytes, lengthBytes, little);
        if (length > this.#maxBody) throw new FrameTooLargeError(length, this.#maxBody);
        if (length === 0) {
          onFrame.call(thisArg, id, new Uint8Array(0));
          continue;
        }
      }

      // The body continues past this chunk: reserve its buffer from the header.
      this.#id = id;
      this.#bodyLength = length;
      this.#bodyFill = 0;
      if (this.#recycle && length > RECYCLE_ABOVE && length <= POOL_MAX_SIZE) {
        this.#pooled = takePooled(length);
        this.#body = this.#pooled.subarray(0, length);
      } else {
        this.#body = length <= SLAB_MAX_BODY
          ? bodySlab.take(length)
          : new Uint8Array(length <= EAGER_BODY_LIMIT ? length : EAGER_BODY_LIMIT);
      }
      this.#state = BODY;
    }
  }

  /**
   * With `reuseViews`, before a chunk in `buffer` is decoded: how many of its
   * frames' views to keep for the next chunk (0 when the chunk is in memory
   * other than the last one's: then nothing of it is held).
   */
  #viewTarget(buffer: ArrayBufferLike): number {
    if (buffer === this.#viewBuffer) return REUSED_VIEWS_MAX;
    // Other memory: let go of the old.
    this.#viewBuffer = undefined;
    if (this.#lastBuffer !== undefined && this.#lastBuffer.deref() === buffer) {
      // The second chunk in a row in this memory: the caller reuses it.
      this.#lastBuffer = undefined;
      this.#freshChunks = 0;
      this.#viewBuffer = buffer;
      return REUSED_VIEWS_MAX;
    }
    // Remembered weakly, to compare the next chunk with; after a run of
    // chunks each in fresh memory (Bun's larger ones), only every
    // PROBE_EVERY-th: a WeakRef per chunk would be waste there.
    let fresh = this.#freshChunks + 1;
    if (fresh > FRESH_BEFORE_PROBING + PROBE_EVERY) fresh = FRESH_BEFORE_PROBING + 1;
    this.#freshChunks = fresh;
    const probe = fresh <= FRESH_BEFORE_PROBING || fresh === FRESH_BEFORE_PROBING + PROBE_EVERY;
    this.#lastBuffer = probe ? new WeakRef(buffer) : undefined;
    return 0;
  }

  /** Copy `count` bytes of `chunk` from `pos` onto the body being collected. */
  #append(chunk: Uint8Array, pos: number, count: number): void {
    const needed = this.#bodyFill + count;
    if (needed > this.#body.length) {
      // Only for bodies over EAGER_BODY_LIMIT: grow by doubling, up to the announced length.
      let size = this.#body.length * 2;
      while (size < needed) size *= 2;
      const grown = new Uint8Array(Math.min(size, this.#bodyLength));
      grown.set(this.#body.subarray(0, this.#bodyFill));
      this.#copied += this.#bodyFill;
      this.#body = grown;
    }
    if (count === 1) this.#body[this.#bodyFill] = chunk[pos]!;
    else this.#body.set(chunk.subarray(pos, pos + count), this.#bodyFill);
    this.#bodyFill = needed;
    this.#copied += count;
  }
}

/**
 * A decoder that reuses memory as the server's `borrowBodies` needs
 * (internal: see {@link FrameDecoderOptions}).
 *
 * @param layout A layout or layout options.
 * @param options Which reuse to switch on.
 * @returns The decoder.
 */
export function recyclingDecoder(layout: FrameLayoutOptions | FrameLayout | undefined, options: FrameDecoderOptions): FrameDecoder {
  const decoder = new FrameDecoder(layout);
  setRecycling(decoder, options);
  return decoder;
}
