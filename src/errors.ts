/**
 * Typed errors raised by the codec. Each carries the facts as fields so that
 * callers can react without parsing messages.
 *
 * @module
 */

/**
 * A frame header announced a body longer than the configured `maxBody`, or a
 * caller tried to encode one. "Too long" is kept apart from "corrupt"
 * ({@link IncompleteFrameError}): the stream itself was well formed.
 *
 * @example
 * ```ts
 * import { FrameDecoder, FrameTooLargeError } from "@tlvkit/tlvkit";
 * const decoder = new FrameDecoder({ maxBody: 4 });
 * try {
 *   decoder.push(new Uint8Array([0, 1, 0, 5]));
 * } catch (error) {
 *   if (error instanceof FrameTooLargeError) console.log(error.length, error.limit); // 5 4
 * }
 * ```
 */
export class FrameTooLargeError extends Error {
  /** The body length the header announced (or the caller tried to encode). */
  readonly length: number;
  /** The largest body length allowed (`maxBody`). */
  readonly limit: number;

  /**
   * Build the error.
   *
   * @param length The announced or attempted body length.
   * @param limit The configured `maxBody`.
   * @param action What was being done, for the message (`"accept"` or `"encode"`).
   */
  constructor(length: number, limit: number, action: "accept" | "encode" = "accept") {
    super(
      action === "accept"
        ? `Cannot accept frame: announced length ${length} exceeds limit ${limit}`
        : `Cannot encode frame: body length ${length} exceeds limit ${limit}`,
    );
    this.name = "FrameTooLargeError";
    this.length = length;
    this.limit = limit;
  }
}

/**
 * The stream ended in the middle of a frame: bytes remain that do not make a
 * whole frame. Raised by {@link FrameDecoder.finish}; leftover bytes are never
 * dropped silently.
 *
 * @example
 * ```ts
 * import { FrameDecoder, IncompleteFrameError } from "@tlvkit/tlvkit";
 * const decoder = new FrameDecoder();
 * decoder.push(new Uint8Array([0, 1, 0, 3, 0x61]));
 * try {
 *   decoder.finish();
 * } catch (error) {
 *   if (error instanceof IncompleteFrameError) console.log(error.received, error.expected); // 5 7
 * }
 * ```
 */
export class IncompleteFrameError extends Error {
  /** Bytes of the unfinished frame received so far (header included). */
  readonly received: number;
  /** Full size of the unfinished frame, or `undefined` when its header was incomplete. */
  readonly expected: number | undefined;

  /**
   * Build the error.
   *
   * @param received Bytes of the frame received so far.
   * @param expected Whole frame size when known.
   */
  constructor(received: number, expected: number | undefined) {
    super(
      expected === undefined
        ? `Cannot finish stream: ${received} bytes remain of an incomplete frame header`
        : `Cannot finish stream: ${received} of ${expected} bytes of a frame received`,
    );
    this.name = "IncompleteFrameError";
    this.received = received;
    this.expected = expected;
  }
}

/**
 * A decoder was used after it failed (a frame too large, or a frame callback
 * that threw). The original failure is in `cause`.
 *
 * @example
 * ```ts
 * import { DecoderFailedError, FrameDecoder } from "@tlvkit/tlvkit";
 * const decoder = new FrameDecoder({ maxBody: 0 });
 * try {
 *   decoder.push(new Uint8Array([0, 1, 0, 1])); // throws FrameTooLargeError
 * } catch {
 *   // the decoder is now failed
 * }
 * try {
 *   decoder.push(new Uint8Array([0]));
 * } catch (error) {
 *   console.log(error instanceof DecoderFailedError); // true
 * }
 * ```
 */
export class DecoderFailedError extends Error {
  /**
   * Build the error.
   *
   * @param cause The error that failed the decoder.
   */
  constructor(cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`Cannot decode: decoder failed earlier (${reason}); create a new decoder`, { cause });
    this.name = "DecoderFailedError";
  }
}
