/**
 * A bump allocator for short-lived byte regions: regions are carved in order
 * from a shared slab and never handed out twice or rewritten, so each stays
 * valid for as long as it is referenced; a slab is freed by the garbage
 * collector once no region of it is. One off-heap `ArrayBuffer` per small
 * buffer costs more on V8 and JSC than the work done with it; this amortises
 * it over a slab. The last region handed out can be given back with
 * {@link ByteSlab.reclaim} once nothing refers to it, so a caller that is done
 * with its buffer at once (a write the OS took whole) reuses the same bytes
 * every time, and the same view of them when it takes as many again (one
 * object fewer per use). Private to the codec, the session and the adapters.
 *
 * @module
 */

/** Hands out fresh regions of up to `maxRegion` bytes from `slabSize`-byte slabs. */
export class ByteSlab {
  readonly #slabSize: number;
  readonly #maxRegion: number;
  #slab = new Uint8Array(0);
  #offset = 0;
  /** The last region `take` carved from the slab, and where it starts. */
  #last: Uint8Array | undefined;
  #lastStart = 0;
  /** The region given back last, handed out again for a take of its size at its place. */
  #reclaimed: Uint8Array | undefined;

  /**
   * @param slabSize Bytes per slab.
   * @param maxRegion Larger requests get a buffer of their own.
   */
  constructor(slabSize: number, maxRegion: number) {
    this.#slabSize = slabSize;
    this.#maxRegion = maxRegion;
  }

  /**
   * A region of `length` bytes that nothing else uses. It is zero-filled only
   * if it was never reclaimed: callers overwrite every byte they hand on.
   */
  take(length: number): Uint8Array {
    if (length > this.#maxRegion) return new Uint8Array(length);
    if (this.#offset + length > this.#slab.length) {
      this.#slab = new Uint8Array(this.#slabSize);
      this.#offset = 0;
    }
    const start = this.#offset;
    const reclaimed = this.#reclaimed;
    this.#reclaimed = undefined;
    const region = reclaimed !== undefined && reclaimed.byteOffset === start && reclaimed.length === length &&
        reclaimed.buffer === this.#slab.buffer
      ? reclaimed
      : new Uint8Array(this.#slab.buffer, start, length);
    this.#offset = start + ((length + 7) & ~7);
    this.#last = region;
    this.#lastStart = start;
    return region;
  }

  /**
   * Keep only the first `length` bytes of `region`, the last one
   * {@link ByteSlab.take} returned, and give the rest back: for callers that
   * take the most they could need, then learn how much they used.
   *
   * @returns The region's first `length` bytes.
   */
  trim(region: Uint8Array, length: number): Uint8Array {
    if (region !== this.#last) return region.subarray(0, length);
    const kept = region.subarray(0, length);
    this.#offset = this.#lastStart + ((length + 7) & ~7);
    this.#last = kept;
    return kept;
  }

  /**
   * Give back `region`, the last one {@link ByteSlab.take} returned, because
   * nothing refers to it any more: the next `take` reuses its bytes. Anything
   * else (an older region, a buffer of its own) is left to the garbage
   * collector.
   *
   * @returns `true` when the region was given back.
   */
  reclaim(region: Uint8Array): boolean {
    if (region !== this.#last) return false;
    this.#offset = this.#lastStart;
    this.#last = undefined;
    this.#reclaimed = region;
    return true;
  }
}
