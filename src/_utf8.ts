/**
 * UTF-8 encoding for frame bodies. `TextEncoder.encode` allocates a new
 * off-heap buffer per call, which on V8 (Node.js, Deno) costs about a
 * microsecond, more than encoding a short JSON reply; `encodeInto` a region of
 * a shared slab costs a tenth of that. Bodies made here are copied into the
 * outgoing buffer when flushed, and slab regions are never rewritten, so they
 * stay valid for as long as anything refers to them. Private to the library.
 *
 * @module
 */

import { ByteSlab } from "./_byte_slab.ts";

const encoder = new TextEncoder();
/** Texts whose worst case (3 bytes per UTF-16 unit) exceeds this get a buffer of their own. */
const SLAB_MAX_TEXT = 16 * 1024;
const textSlab = new ByteSlab(64 * 1024, SLAB_MAX_TEXT);

/**
 * `text` as UTF-8 bytes (lone surrogates become U+FFFD, as with `TextEncoder`).
 *
 * @param text Any string.
 * @returns Its UTF-8 encoding, in memory nothing else uses.
 */
export function encodeUtf8(text: string): Uint8Array {
  const worst = text.length * 3;
  if (worst > SLAB_MAX_TEXT) return encoder.encode(text);
  const region = textSlab.take(worst);
  const { written } = encoder.encodeInto(text, region);
  return textSlab.trim(region, written);
}
