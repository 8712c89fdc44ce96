/**
 * A bump allocator for short-lived byte regions: regions are carved in order
 * from a shared slab and never handed out twice or rewritten, so each stays
 * valid for as long as it is referenced; a slab is freed by the garbage
 * collector once no region of it is. One off-heap `ArrayBuffer` per small
 * buffer costs more on V8 and JSC than the work done with it; this amortises
 * it over a slab. Private to the codec and the session.
 *
 * @module
 */

/** Hands out fresh regions of up to `maxRegion` bytes from `slabSize`-byte slabs. */
export class ByteSlab {
  readonly #slabSize: number;
  readonly #maxRegion: number;
  #slab = new Uint8Array(0);
  #offset = 0;

  /**
   * @param slabSize Bytes per slab.
   * @param maxRegion Larger requests get a buffer of their own.
   */
  constructor(slabSize: number, maxRegion: number) {
    this.#slabSize = slabSize;
    this.#maxRegion = maxRegion;
  }

  /** A fresh, zero-filled region of `length` bytes that nothing else uses. */
  take(length: number): Uint8Array {
    if (length > this.#maxRegion) return new Uint8Array(length);
    if (this.#offset + length > this.#slab.length) {
      this.#slab = new Uint8Array(this.#slabSize);
      this.#offset = 0;
    }
    const region = this.#slab.subarray(this.#offset, this.#offset + length);
    this.#offset += (length + 7) & ~7;
    return region;
  }
}
