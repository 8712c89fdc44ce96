/**
 * The shape of a frame on the wire: how wide the id and length fields are, their
 * byte order, and the largest body accepted.
 *
 * @module
 */

/** Widths an id field may have, in bytes. `0` means frames carry no id (length-only). */
export type IdBytes = 0 | 1 | 2 | 4;
/** Widths a length field may have, in bytes. */
export type LengthBytes = 1 | 2 | 4;
/** Byte order of the header fields. */
export type ByteOrder = "big" | "little";

/**
 * Options that choose a frame layout. Every field is optional; the defaults give
 * the tlvkit wire format of docs/protocol.md#frame-layout (u16 id, u16 length,
 * big-endian).
 *
 * Default layout, id 1001 (`0x03e9`), body `"hi"`:
 *
 * ```text
 *  +--------+--------+--------+--------+--------+--------+
 *  |   id (u16, BE)  | length (u16,BE) |  body (2 bytes) |
 *  |  0x03  |  0xe9  |  0x00  |  0x02  |  0x68  |  0x69  |
 *  +--------+--------+--------+--------+--------+--------+
 * ```
 *
 * `byteOrder: "little"` swaps the bytes inside each field:
 *
 * ```text
 *  BEFORE (big)    03 e9 | 00 02 | 68 69
 *  AFTER (little)  e9 03 | 02 00 | 68 69
 * ```
 *
 * `idBytes: 0` drops the id (length-only frames; decoded frames have id 0):
 *
 * ```text
 *  BEFORE (idBytes 2)  03 e9 | 00 02 | 68 69
 *  AFTER  (idBytes 0)          00 02 | 68 69
 * ```
 *
 * `idBytes: 1` / `idBytes: 4` narrow or widen the id field (id 7 shown):
 *
 * ```text
 *  idBytes 1     07          | 00 02 | 68 69
 *  idBytes 4     00 00 00 07 | 00 02 | 68 69
 * ```
 *
 * `lengthBytes: 1` / `lengthBytes: 4` narrow or widen the length field:
 *
 * ```text
 *  lengthBytes 1   03 e9 | 02          | 68 69
 *  lengthBytes 4   03 e9 | 00 00 00 02 | 68 69
 * ```
 *
 * The length counts body bytes only; it never includes the header.
 *
 * @example
 * ```ts
 * import { FrameDecoder } from "@tlvkit/tlvkit";
 * // length-only frames, 4-byte little-endian lengths, bodies up to 1 MiB
 * const decoder = new FrameDecoder({ idBytes: 0, lengthBytes: 4, byteOrder: "little", maxBody: 1 << 20 });
 * ```
 */
export interface FrameLayoutOptions {
  /**
   * Width of the id field in bytes: 0, 1, 2 or 4. `0` gives length-only frames.
   * @default {2}
   */
  idBytes?: IdBytes;
  /**
   * Width of the length field in bytes: 1, 2 or 4.
   * @default {2}
   */
  lengthBytes?: LengthBytes;
  /**
   * Byte order of the id and length fields.
   * @default {"big"}
   */
  byteOrder?: ByteOrder;
  /**
   * Largest body accepted, in bytes: 0 up to the largest value the length field
   * holds (at most 2^32 - 1). A header announcing more fails the frame with
   * `FrameTooLargeError` before any of its body is buffered.
   * @default the largest value the length field holds (255 or 65535), or 64 MiB for 4-byte lengths
   */
  maxBody?: number;
}

/** The default cap on `maxBody` for 4-byte length fields: 64 MiB. */
export const DEFAULT_MAX_BODY_4_BYTE_LENGTH: number = 64 * 1024 * 1024;

const ID_WIDTHS: readonly number[] = [0, 1, 2, 4];
const LENGTH_WIDTHS: readonly number[] = [1, 2, 4];

/** Largest unsigned value a field of `bytes` bytes holds. */
function largestValue(bytes: number): number {
  return bytes === 0 ? 0 : 2 ** (8 * bytes) - 1;
}

function describe(value: unknown): string {
  return typeof value === "string" ? `"${value}"` : String(value);
}

/**
 * A validated, immutable frame layout. Build one once and share it between
 * encoders and decoders; constructing validates every option and throws a
 * `RangeError` naming the bad one.
 *
 * @example
 * ```ts
 * import { FrameLayout } from "@tlvkit/tlvkit";
 * const layout = new FrameLayout({ lengthBytes: 4 });
 * console.log(layout.headerSize, layout.maxBody); // 6 67108864
 * ```
 */
export class FrameLayout {
  /** The default layout: u16 id, u16 length, big-endian, bodies up to 65535 bytes. */
  static readonly DEFAULT: FrameLayout = new FrameLayout();

  /** Width of the id field in bytes. */
  readonly idBytes: IdBytes;
  /** Width of the length field in bytes. */
  readonly lengthBytes: LengthBytes;
  /** Byte order of the header fields. */
  readonly byteOrder: ByteOrder;
  /** `true` when the header fields are little-endian. */
  readonly littleEndian: boolean;
  /** Largest body accepted, in bytes. */
  readonly maxBody: number;
  /** Header size in bytes (`idBytes + lengthBytes`). */
  readonly headerSize: number;
  /** Largest id the id field holds (0 for length-only layouts). */
  readonly maxId: number;

  /**
   * Build and validate a layout.
   *
   * @param options The layout options; omitted fields take their defaults.
   * @throws {RangeError} When an option has a value outside its range; the message names it.
   */
  constructor(options: FrameLayoutOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`Invalid frame layout options: expected an object, got ${describe(options)}`);
    }
    const { idBytes = 2, lengthBytes = 2, byteOrder = "big" } = options;
    if (!ID_WIDTHS.includes(idBytes)) {
      throw new RangeError(`Invalid option "idBytes": ${describe(idBytes)} is not one of 0, 1, 2, 4`);
    }
    if (!LENGTH_WIDTHS.includes(lengthBytes)) {
      throw new RangeError(`Invalid option "lengthBytes": ${describe(lengthBytes)} is not one of 1, 2, 4`);
    }
    if (byteOrder !== "big" && byteOrder !== "little") {
      throw new RangeError(`Invalid option "byteOrder": ${describe(byteOrder)} is not "big" or "little"`);
    }
    const lengthLimit = largestValue(lengthBytes);
    const maxBody = options.maxBody ?? (lengthBytes === 4 ? DEFAULT_MAX_BODY_4_BYTE_LENGTH : lengthLimit);
    if (typeof maxBody !== "number" || !Number.isInteger(maxBody) || maxBody < 0) {
      throw new RangeError(`Invalid option "maxBody": ${describe(maxBody)} is not a non-negative integer`);
    }
    if (maxBody > lengthLimit) {
      throw new RangeError(
        `Invalid option "maxBody": ${maxBody} exceeds ${lengthLimit}, the largest a ${lengthBytes}-byte length field holds`,
      );
    }
    this.idBytes = idBytes;
    this.lengthBytes = lengthBytes;
    this.byteOrder = byteOrder;
    this.littleEndian = byteOrder === "little";
    this.maxBody = maxBody;
    this.headerSize = idBytes + lengthBytes;
    this.maxId = largestValue(idBytes);
    Object.freeze(this);
  }

  /**
   * Resolve options or an existing layout into a layout, reusing the default
   * when nothing is given.
   *
   * @param options Options, a layout, or nothing.
   * @returns A validated layout.
   * @example
   * ```ts
   * import { FrameLayout } from "@tlvkit/tlvkit";
   * FrameLayout.from() === FrameLayout.DEFAULT; // true
   * ```
   */
  static from(options?: FrameLayoutOptions | FrameLayout): FrameLayout {
    if (options instanceof FrameLayout) return options;
    if (options === undefined) return FrameLayout.DEFAULT;
    return new FrameLayout(options);
  }

  /**
   * Size on the wire of a frame with a body of `bodyLength` bytes.
   *
   * @param bodyLength Body size in bytes.
   * @returns Header size plus body size.
   * @example
   * ```ts
   * import { FrameLayout } from "@tlvkit/tlvkit";
   * FrameLayout.DEFAULT.frameSize(2); // 6
   * ```
   */
  frameSize(bodyLength: number): number {
    return this.headerSize + bodyLength;
  }
}
