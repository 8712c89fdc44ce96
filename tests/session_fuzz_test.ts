import { describe, it } from "node:test";
import { fuzzSession } from "./_session_fuzz.ts";
import { runSeed } from "./_seeded_random.ts";

const seed = runSeed();
const ROUNDS = 600;

describe(`TransportSession fuzz (seed ${seed}; rerun with TLVKIT_SEED=${seed})`, () => {
  it(`keeps its invariants over ${ROUNDS} random sessions and event sequences`, async () => {
    try {
      await fuzzSession(seed, ROUNDS);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`${message}\nrerun with TLVKIT_SEED=${seed}`, { cause: error });
    }
  });
});
