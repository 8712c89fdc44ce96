/**
 * The long fuzz run: the decoder's differential fuzzer and the session's
 * model-based fuzzer, over fresh seeds until the time is up. Prints the seeds
 * tried and rounds run, and the first failure with the seed that replays it
 * (`TLVKIT_SEED=<seed>` with the fuzz tests, or `--seed <seed>` here).
 *
 * ```sh
 * node --import tsx scripts/fuzz.ts [--seconds 60] [--seed N]
 * deno run --allow-env scripts/fuzz.ts --seconds 60
 * bun scripts/fuzz.ts --seconds 60
 * ```
 *
 * With `--seed`, runs that seed once (decoder and session) and stops.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { fuzzDecoder } from "../tests/_decoder_fuzz.ts";
import { fuzzSession, sessionFuzzStats } from "../tests/_session_fuzz.ts";

/** Rounds per seed: one seed is a few hundred milliseconds of work. */
const DECODER_ROUNDS = 500;
const SESSION_ROUNDS = 300;

function usage(message: string): never {
  console.error(`${message}\nUsage: fuzz [--seconds 60] [--seed N]`);
  process.exit(2);
}

function parse(): { seconds: number; seed: number | undefined } {
  let values: { seconds?: string | undefined; seed?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: { seconds: { type: "string" }, seed: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usage(error instanceof Error ? error.message : String(error));
  }
  const seconds = Number(values.seconds ?? "60");
  if (!Number.isFinite(seconds) || seconds <= 0) usage(`Invalid --seconds: "${values.seconds}"`);
  let seed: number | undefined;
  if (values.seed !== undefined) {
    seed = Number(values.seed);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) usage(`Invalid --seed: "${values.seed}" is not a 32-bit unsigned integer`);
  }
  return { seconds, seed };
}

function freshSeed(): number {
  return (Date.now() ^ Math.floor(Math.random() * 0x100000000)) >>> 0;
}

async function main(): Promise<number> {
  const { seconds, seed: fixedSeed } = parse();
  const deadline = Date.now() + seconds * 1000;
  const started = Date.now();
  let seeds = 0;
  let decoderRounds = 0;
  let sessionRounds = 0;
  const stats = sessionFuzzStats();
  console.log(fixedSeed === undefined ? `fuzzing for ${seconds} s` : `fuzzing seed ${fixedSeed}`);
  do {
    const seed = fixedSeed ?? freshSeed();
    seeds++;
    for (const [name, run] of [
      ["decoder", () => Promise.resolve(fuzzDecoder(seed, DECODER_ROUNDS))],
      ["session", () => fuzzSession(seed, SESSION_ROUNDS, stats)],
    ] as const) {
      try {
        await run();
      } catch (error) {
        console.error(`\nFAILED (${name} fuzz) with seed ${seed}:`);
        console.error(error instanceof Error ? error.message : String(error));
        console.error(`\nreplay: node --import tsx scripts/fuzz.ts --seed ${seed}   or   TLVKIT_SEED=${seed} with tests/${name}_fuzz_test.ts`);
        console.error(`(${seeds} seeds tried, ${decoderRounds} decoder and ${sessionRounds} session rounds passed before)`);
        return 1;
      }
      if (name === "decoder") decoderRounds += DECODER_ROUNDS;
      else sessionRounds += SESSION_ROUNDS;
    }
  } while (fixedSeed === undefined && Date.now() < deadline);
  const elapsed = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`ok: ${seeds} seeds, ${decoderRounds} decoder rounds, ${sessionRounds} session rounds in ${elapsed} s`);
  const reasons = Object.entries(stats.reasons).sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${reason} ${n}`).join(", ");
  console.log(
    `session coverage: ${stats.steps} steps (${stats.stepsOpen} while open), ${stats.requests} requests, ` +
      `${stats.framesWritten} frames written, ${stats.repliesHeld} replies held for order, ` +
      `${stats.pushesAccepted} pushes queued / ${stats.pushesRefused} refused, ${stats.roundsPaused} rounds paused, ` +
      `${stats.gracefulEnds} graceful FINs checked; first close reasons: ${reasons}`,
  );
  // The same seeds give the same fingerprint unless the session's observable behaviour changed.
  console.log(`session behaviour fingerprint: ${stats.fingerprint.toString(16).padStart(8, "0")}`);
  return 0;
}

process.exitCode = await main();
