/**
 * A small seeded pseudo-random generator (mulberry32) for reproducible
 * property tests. Set `TLVKIT_SEED` to replay a failure.
 *
 * @module
 */

import process from "node:process";

/** Deterministic random numbers from a 32-bit seed. */
export class SeededRandom {
  readonly seed: number;
  #state: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  /** `length` random bytes. */
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.int(0, 255);
    return out;
  }
}

/**
 * The seed for this run: `TLVKIT_SEED` when set (to replay a failure), else a
 * fresh one. Tests print it in every assertion message.
 */
export function runSeed(): number {
  const fromEnv = process.env.TLVKIT_SEED;
  if (fromEnv !== undefined && fromEnv !== "") {
    const seed = Number(fromEnv);
    if (!Number.isInteger(seed)) throw new RangeError(`Invalid TLVKIT_SEED: "${fromEnv}" is not an integer`);
    return seed >>> 0;
  }
  return (Date.now() ^ Math.floor(Math.random() * 0x100000000)) >>> 0;
}
