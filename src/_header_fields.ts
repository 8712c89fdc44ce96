/**
 * Reading and writing the unsigned header fields of a frame, without a
 * `DataView` per call. Private to the codec.
 *
 * @module
 */

/**
 * Read an unsigned integer of `width` bytes (0, 1, 2 or 4) at `offset`.
 * A width of 0 reads as 0.
 */
export function readField(bytes: Uint8Array, offset: number, width: number, littleEndian: boolean): number {
  switch (width) {
    case 2:
      return littleEndian
        ? bytes[offset]! | (bytes[offset + 1]! << 8)
        : (bytes[offset]! << 8) | bytes[offset + 1]!;
    case 1:
      return bytes[offset]!;
    case 4:
      return littleEndian
        ? bytes[offset + 3]! * 0x1000000 + ((bytes[offset + 2]! << 16) | (bytes[offset + 1]! << 8) | bytes[offset]!)
        : bytes[offset]! * 0x1000000 + ((bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!);
    default:
      return 0;
  }
}

/**
 * Write `value` as an unsigned integer of `width` bytes (0, 1, 2 or 4) at
 * `offset`. The caller has checked that it fits.
 */
export function writeField(
  bytes: Uint8Array,
  offset: number,
  width: number,
  value: number,
  littleEndian: boolean,
): void {
  switch (width) {
    case 2:
      if (littleEndian) {
        bytes[offset] = value;
        bytes[offset + 1] = value >>> 8;
      } else {
        bytes[offset] = value >>> 8;
        bytes[offset + 1] = value;
      }
      return;
    case 1:
      bytes[offset] = value;
      return;
    case 4:
      if (littleEndian) {
        bytes[offset] = value;
        bytes[offset + 1] = value >>> 8;
        bytes[offset + 2] = value >>> 16;
        bytes[offset + 3] = value >>> 24;
      } else {
        bytes[offset] = value >>> 24;
        bytes[offset + 1] = value >>> 16;
        bytes[offset + 2] = value >>> 8;
        bytes[offset + 3] = value;
      }
      return;
  }
}
