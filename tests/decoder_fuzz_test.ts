import { describe, it } from "node:test";
import { fuzzDecoder } from "./_decoder_fuzz.ts";
import { runSeed } from "./_seeded_random.ts";

const seed = runSeed();
const ROUNDS = 1000;

describe(`FrameDecoder fuzz (seed ${seed}; rerun with TLVKIT_SEED=${seed})`, () => {
  it(`matches the reference model over ${ROUNDS} random layouts, streams and chunkings`, () => {
    try {
      fuzzDecoder(seed, ROUNDS);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`${message}\nrerun with TLVKIT_SEED=${seed}`, { cause: error });
    }
  });
});
