/**
 * Memory for outgoing writes: small buffers are carved from a shared 64 KiB
 * slab by a bump allocator instead of getting an `ArrayBuffer` each (one
 * off-heap allocation per flush costs more than encoding a batch of small
 * frames). A region is handed out once and never rewritten, so the transport
 * may hold it for as long as it needs; a slab is freed when no region of it is
 * referenced any more. Private to the session.
 *
 * @module
 */

const SLAB_SIZE = 64 * 1024;
/** Writes larger than this get a buffer of their own. */
const SLAB_MAX = 16 * 1024;

let slab = new Uint8Array(0);
let offset = 0;

/** A fresh region of `length` bytes that nothing else uses. */
export function outputBuffer(length: number): Uint8Array {
  if (length > SLAB_MAX) return new Uint8Array(length);
  if (offset + length > slab.length) {
    slab = new Uint8Array(SLAB_SIZE);
    offset = 0;
  }
  const region = slab.subarray(offset, offset + length);
  offset += (length + 7) & ~7;
  return region;
}
