/**
 * A process-wide free list of byte buffers in power-of-two sizes from 8 KiB
 * to 64 KiB, for memory whose owner knows exactly when nothing refers to it
 * any more: a session's flush once the transport's backlog is back to 0, a
 * reassembled body once its handlers are done. A fresh off-heap `ArrayBuffer`
 * per such buffer costs far more than filling it, and a bump slab cannot take
 * back a region from the middle (docs/performance.md#buffers-and-memory).
 * Private to the decoder and the session.
 *
 * A buffer must be given back at most once, and only when nothing refers to
 * it; one never given back is left to the garbage collector. At most
 * {@link POOL_BYTES_PER_SIZE} bytes of free buffers are kept per size (8 MiB
 * over the four sizes, and only after as many were out at once), so the pool
 * holds a bounded amount when traffic stops. The limit must cover the
 * buffers in flight together: on Deno a flush stays with the transport until
 * its write is done, so deep pipelines on many connections have one out per
 * connection at once, and a pool smaller than that allocates the rest afresh
 * every time (docs/performance.md#buffers-and-memory).
 *
 * @module
 */

/** Smallest pooled size, as a power of two (8 KiB). */
const MIN_SHIFT = 13;
/** Largest pooled size, as a power of two (64 KiB). */
const MAX_SHIFT = 16;

/** Smallest buffer the pool hands out. */
export const POOL_MIN_SIZE: number = 1 << MIN_SHIFT;
/** Largest buffer the pool hands out; {@link takePooled} allocates larger ones unpooled. */
export const POOL_MAX_SIZE: number = 1 << MAX_SHIFT;
/** Free bytes kept per size. */
export const POOL_BYTES_PER_SIZE: number = 2 * 1024 * 1024;

const free: Uint8Array[][] = [];
for (let shift = MIN_SHIFT; shift <= MAX_SHIFT; shift++) free.push([]);

function sizeIndex(length: number): number {
  let index = 0;
  while (POOL_MIN_SIZE << index < length) index++;
  return index;
}

/**
 * A buffer of at least `length` bytes, which the caller owns until it gives it
 * back with {@link givePooled}: its whole power-of-two size (a reused one's
 * old bytes included), or exactly `length` bytes past {@link POOL_MAX_SIZE}.
 */
export function takePooled(length: number): Uint8Array {
  if (length > POOL_MAX_SIZE) return new Uint8Array(length);
  const index = sizeIndex(length);
  return free[index]!.pop() ?? new Uint8Array(POOL_MIN_SIZE << index);
}

/**
 * Give back a buffer {@link takePooled} returned (whole, not a view of part of
 * it): nothing may refer to it any more. Unpooled sizes are left to the
 * garbage collector, as are buffers past the pool's limit.
 */
export function givePooled(buffer: Uint8Array): void {
  const length = buffer.length;
  if (length < POOL_MIN_SIZE || length > POOL_MAX_SIZE || (length & (length - 1)) !== 0) return;
  const list = free[sizeIndex(length)]!;
  if ((list.length + 1) * length <= POOL_BYTES_PER_SIZE) list.push(buffer);
}

/** Free bytes held, for tests. */
export function pooledBytes(): number {
  let total = 0;
  for (const list of free) for (const buffer of list) total += buffer.length;
  return total;
}
