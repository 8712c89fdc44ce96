/**
 * Memory for one connection's reads, for an adapter whose runtime pulls each
 * read into a buffer given in advance (Deno's `conn.read`). Each read
 * takes the next unused region of the connection's current slab; the bytes
 * read are handed on as a view of it, and the unused tail of the region goes
 * back to the slab. A region is never read into twice, unless the receiver
 * handed its chunk back ({@link ReadRegions.release}): then the next read goes
 * into the same bytes, as a raw echo's one reused buffer does: reading into
 * fresh memory costs the runtime an allocation and a collection per chunk
 * (docs/performance.md#buffers-and-memory).
 *
 * The read size adapts between 512 bytes and 64 KiB (it doubles when a read
 * fills its region and halves when reads come back small), and a slab is
 * sized from it (room for four reads, at most 64 KiB), so an idle connection,
 * its one read pending at the minimum size, holds 512 bytes instead of 64 KiB.
 * A burst that arrives on such a connection takes a few more reads while the
 * size doubles (docs/performance.md#idle-sessions).
 *
 * Only one read may be pending per connection: take a region, read into it,
 * then call {@link ReadRegions.filled} (or {@link ReadRegions.release}) before
 * taking the next. Private to the Deno adapter.
 *
 * @module
 */

/** Largest slab. */
const SLAB_SIZE = 64 * 1024;
/** A new slab is taken when less than this remains (and less than a read wants). */
const SLAB_REFILL_BELOW = 16 * 1024;
/** Smallest and initial read size: a fresh connection's first region. */
const MIN_READ = 512;
/** Largest read size. */
const MAX_READ = 64 * 1024;

const EMPTY = new Uint8Array(0);

/** The read buffers of one connection. */
export class ReadRegions {
  #readSize = MIN_READ;
  #slab: Uint8Array = EMPTY;
  #slabUsed = 0;
  /**
   * The last region handed out and the last chunk cut from it, both in
   * `#viewSlab` (`undefined` once a new slab is taken): a read into the same
   * bytes as the one before (its chunk handed back) gets the same objects
   * again instead of new views. A steady stream then allocates no view per
   * read, and the receiver's views of its frames can be its own again too
   * (the decoder's `reuseViews` matches them by memory and place).
   */
  #region: Uint8Array = EMPTY;
  #chunk: Uint8Array = EMPTY;
  #viewSlab: Uint8Array | undefined;

  /** A region of the current read size (or what is left of the slab) to read into next. */
  take(): Uint8Array {
    const want = this.#readSize;
    let slab = this.#slab;
    let free = slab.length - this.#slabUsed;
    if (free < want && free < SLAB_REFILL_BELOW) {
      // A connection still at the minimum read size (new, idle or sending
      // little) gets a slab of just that; a busy one gets room for several reads.
      slab = this.#slab = new Uint8Array(want === MIN_READ ? MIN_READ : Math.min(SLAB_SIZE, want * 4));
      this.#slabUsed = 0;
      free = slab.length;
      // Views of the old slab would keep it alive.
      this.#viewSlab = undefined;
      this.#region = this.#chunk = EMPTY;
    }
    const start = this.#slabUsed;
    const size = want < free ? want : free;
    this.#slabUsed = start + size;
    const last = this.#region;
    if (this.#viewSlab === slab && last.byteOffset === start && last.length === size) return last;
    // Views by constructor: cheaper than subarray on V8 and JSC.
    const region = new Uint8Array(slab.buffer, start, size);
    this.#viewSlab = slab;
    this.#region = region;
    this.#chunk = EMPTY;
    return region;
  }

  /**
   * `read` bytes (more than 0) arrived in `region`, the last one taken: keep
   * them, give the rest back and adapt the read size.
   *
   * @returns The bytes read: `region` itself when they fill it, else a view
   *   of it (the same object as last time for the same bytes).
   */
  filled(region: Uint8Array, read: number): Uint8Array {
    this.#returnTail(region, read);
    const want = this.#readSize;
    if (read === region.length) {
      if (read === want && want < MAX_READ) this.#readSize = want * 2;
      return region;
    }
    if (read < want >>> 2 && want > MIN_READ) this.#readSize = want >>> 1;
    if (region === this.#region) {
      const last = this.#chunk;
      if (last.length === read) return last;
      return (this.#chunk = new Uint8Array(region.buffer, region.byteOffset, read));
    }
    return new Uint8Array(region.buffer, region.byteOffset, read);
  }

  /**
   * Nothing refers to `bytes` any more: the last region taken, with nothing
   * read into it (end of stream, an error), or the last chunk
   * {@link ReadRegions.filled} returned, handed back. The next read goes into
   * its bytes. Anything older is left alone.
   */
  release(bytes: Uint8Array): void {
    this.#returnTail(bytes, 0);
  }

  /** Give back the part of `region` after its first `used` bytes, if it is the slab's last. */
  #returnTail(region: Uint8Array, used: number): void {
    if (region.byteOffset + region.length !== this.#slabUsed) return;
    // The handed-out views are known to lie in the slab; anything else is checked.
    const slab = this.#slab;
    const known = (region === this.#region || region === this.#chunk) && this.#viewSlab === slab;
    if (known || region.buffer === slab.buffer) this.#slabUsed = region.byteOffset + used;
  }
}
