/**
 * tlvkit: TCP message framing, server and client for Node.js, Deno and Bun.
 *
 * Every message is a frame: a message id, a body length, and the body, in
 * network byte order by default (PROTOCOL.md §1):
 *
 * ```text
 *  +---------------+---------------+-------------------------+
 *  |  message id   |  body length  |  body (length bytes)    |
 *  |  u16, big end |  u16, big end |                         |
 *  +---------------+---------------+-------------------------+
 * ```
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "@tlvkit/tlvkit";
 * const decoder = new FrameDecoder();
 * const wire = encodeFrame(1001, new TextEncoder().encode("hi"));
 * for (const frame of decoder.push(wire)) {
 *   console.log(frame.id, new TextDecoder().decode(frame.body)); // 1001 hi
 * }
 * ```
 *
 * @module
 */

export {
  type ByteOrder,
  DEFAULT_MAX_BODY_4_BYTE_LENGTH,
  FrameLayout,
  type FrameLayoutOptions,
  type IdBytes,
  type LengthBytes,
} from "./src/frame_layout.ts";
export { encodeFrame, encodeFrameInto, FrameEncoder } from "./src/frame_encoder.ts";
export { type Frame, type FrameCallback, FrameDecoder } from "./src/frame_decoder.ts";
export { DecoderFailedError, FrameTooLargeError, IncompleteFrameError } from "./src/errors.ts";
