/**
 * UTF-8 for frame bodies, both ways. `TextEncoder.encode` allocates a new
 * off-heap buffer per call, which on V8 (Node.js, Deno) costs more than
 * encoding a short JSON reply; `encodeInto` a region of a shared slab does not
 * (docs/performance.md#buffers-and-memory). Bodies made here are copied into the
 * outgoing buffer when flushed, and slab regions are never rewritten, so they
 * stay valid for as long as anything refers to them. Private to the library.
 *
 * @module
 */

import { ByteSlab } from "./_byte_slab.ts";

const encoder = new TextEncoder();
const lenient = new TextDecoder();
const strict = new TextDecoder("utf-8", { fatal: true });
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

/**
 * `bytes` decoded as UTF-8, refusing malformed input like a `fatal` decoder.
 * Decoding leniently and looking for U+FFFD is cheaper on Deno, whose fatal
 * decoder takes a slow path (docs/performance.md#deno); only a text that
 * holds U+FFFD, malformed or not, is decoded again strictly.
 *
 * @param bytes UTF-8 bytes (a leading BOM is dropped, as `TextDecoder` does).
 * @returns The text.
 * @throws {TypeError} When `bytes` is not valid UTF-8.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  const text = lenient.decode(bytes);
  return text.includes("\uFFFD") ? strict.decode(bytes) : text;
}
