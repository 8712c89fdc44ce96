/**
 * Encoding frames: header + body into one buffer, or straight into a caller's
 * buffer at an offset so that many frames leave in one write.
 *
 * @module
 */

import { writeField } from "./_header_fields.ts";
import { FrameTooLargeError } from "./errors.ts";
import { FrameLayout, type FrameLayoutOptions } from "./frame_layout.ts";

/**
 * Encodes frames for one layout. Build it once; `encode` and `encodeInto` then
 * do no option work per frame.
 *
 * ```text
 *  encode(1001, "hi")  ->  03 e9 | 00 02 | 68 69      (one allocation)
 *
 *  encodeInto(buf, 4, 7, [0x61])
 *     buf before:  aa aa aa aa 00 00 00 00 00 00
 *     buf after:   aa aa aa aa 00 07 00 01 61 00      returns 9 (the next offset)
 * ```
 *
 * @example
 * ```ts
 * import { FrameEncoder } from "@tlvkit/tlvkit";
 * const encoder = new FrameEncoder();
 * const frame = encoder.encode(1001, new TextEncoder().encode("hi"));
 * console.log(frame); // Uint8Array(6) [ 3, 233, 0, 2, 104, 105 ]
 * ```
 */
export class FrameEncoder {
  /** The layout frames are written in. */
  readonly layout: FrameLayout;
  readonly #idBytes: number;
  readonly #lengthBytes: number;
  readonly #littleEndian: boolean;
  readonly #headerSize: number;
  readonly #maxBody: number;
  readonly #maxId: number;

  /**
   * Build an encoder for a layout.
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
    this.#maxId = this.layout.maxId;
  }

  /**
   * Size in bytes of the frame that `encode(id, body)` would produce.
   *
   * @param body The body, or its length.
   * @returns Header size plus body length.
   * @example
   * ```ts
   * import { FrameEncoder } from "@tlvkit/tlvkit";
   * new FrameEncoder().frameSize(10); // 14
   * ```
   */
  frameSize(body: Uint8Array | number): number {
    return this.#headerSize + (typeof body === "number" ? body : body.length);
  }

  /**
   * Encode one frame into a new buffer holding header and body.
   *
   * @param id Message id, 0 up to the largest the id field holds (must be 0 when `idBytes` is 0).
   * @param body Body bytes; copied once into the frame.
   * @returns The whole frame.
   * @throws {RangeError} When the id does not fit the id field.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @example
   * ```ts
   * import { FrameEncoder } from "@tlvkit/tlvkit";
   * new FrameEncoder({ byteOrder: "little" }).encode(1001, new Uint8Array([0x68, 0x69]));
   * // Uint8Array(6) [ 233, 3, 2, 0, 104, 105 ]
   * ```
   */
  encode(id: number, body: Uint8Array): Uint8Array {
    this.#check(id, body);
    const frame = new Uint8Array(this.#headerSize + body.length);
    this.#write(frame, 0, id, body);
    return frame;
  }

  /**
   * Encode one frame into `target` starting at `offset`.
   *
   * @param target The buffer to write into.
   * @param offset Where the frame starts in `target`.
   * @param id Message id (see {@link FrameEncoder.encode}).
   * @param body Body bytes; copied once into `target`.
   * @returns The offset just past the frame, where the next frame may start.
   * @throws {RangeError} When the id does not fit, or `target` lacks room.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @example
   * ```ts
   * import { FrameEncoder } from "@tlvkit/tlvkit";
   * const encoder = new FrameEncoder();
   * const out = new Uint8Array(encoder.frameSize(1) + encoder.frameSize(0));
   * let offset = encoder.encodeInto(out, 0, 7, new Uint8Array([0x61]));
   * offset = encoder.encodeInto(out, offset, 8, new Uint8Array(0));
   * console.log(offset === out.length); // true
   * ```
   */
  encodeInto(target: Uint8Array, offset: number, id: number, body: Uint8Array): number {
    this.#check(id, body);
    const end = offset + this.#headerSize + body.length;
    if (!Number.isInteger(offset) || offset < 0 || end > target.length) {
      throw new RangeError(
        `Cannot encode frame: it needs ${end - offset} bytes at offset ${offset} but the buffer holds ${target.length}`,
      );
    }
    this.#write(target, offset, id, body);
    return end;
  }

  /**
   * Check that `(id, body)` can be encoded in this layout, without encoding it.
   *
   * @param id Message id.
   * @param body Body bytes.
   * @throws {RangeError} When the id does not fit the id field.
   * @throws {TypeError} When the body is not a `Uint8Array`.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @example
   * ```ts
   * import { FrameEncoder } from "@tlvkit/tlvkit";
   * new FrameEncoder().check(1001, new Uint8Array(2)); // fine
   * ```
   */
  check(id: number, body: Uint8Array): void {
    this.#check(id, body);
  }

  #check(id: number, body: Uint8Array): void {
    if (!(id >= 0 && id <= this.#maxId && Number.isInteger(id))) {
      throw new RangeError(
        this.#idBytes === 0
          ? `Cannot encode frame: id ${id} given but the layout has no id field (idBytes 0); use 0`
          : `Cannot encode frame: id ${id} is not an integer from 0 to ${this.#maxId}`,
      );
    }
    if (!(body instanceof Uint8Array)) {
      throw new TypeError(`Cannot encode frame: body must be a Uint8Array, got ${typeof body}`);
    }
    if (body.length > this.#maxBody) throw new FrameTooLargeError(body.length, this.#maxBody, "encode");
  }

  #write(target: Uint8Array, offset: number, id: number, body: Uint8Array): void {
    writeField(target, offset, this.#idBytes, id, this.#littleEndian);
    writeField(target, offset + this.#idBytes, this.#lengthBytes, body.length, this.#littleEndian);
    if (body.length !== 0) target.set(body, offset + this.#headerSize);
  }
}

/**
 * Encode one frame `(id, body)` into a new buffer: header and body in one
 * allocation. For many frames or a non-default layout, build a
 * {@link FrameEncoder} once instead.
 *
 * @param id Message id (0..65535 in the default layout).
 * @param body Body bytes.
 * @param layout Layout or layout options; defaults to the tlvkit wire format.
 * @returns The frame.
 * @example
 * ```ts
 * import { encodeFrame } from "@tlvkit/tlvkit";
 * encodeFrame(1001, new TextEncoder().encode("hi")); // 03 e9 00 02 68 69
 * ```
 */
export function encodeFrame(id: number, body: Uint8Array, layout?: FrameLayoutOptions | FrameLayout): Uint8Array {
  return (layout === undefined ? defaultEncoder : new FrameEncoder(layout)).encode(id, body);
}

/**
 * Encode one frame into `target` at `offset`, for coalescing several frames
 * into one write.
 *
 * @param target Buffer to write into.
 * @param offset Where the frame starts.
 * @param id Message id.
 * @param body Body bytes.
 * @param layout Layout or layout options; defaults to the tlvkit wire format.
 * @returns The offset just past the frame.
 * @example
 * ```ts
 * import { encodeFrameInto } from "./frame_encoder.ts";
 * const out = new Uint8Array(10);
 * encodeFrameInto(out, 4, 7, new Uint8Array([0x61])); // 9
 * ```
 */
export function encodeFrameInto(
  target: Uint8Array,
  offset: number,
  id: number,
  body: Uint8Array,
  layout?: FrameLayoutOptions | FrameLayout,
): number {
  return (layout === undefined ? defaultEncoder : new FrameEncoder(layout)).encodeInto(target, offset, id, body);
}

const defaultEncoder = new FrameEncoder();
