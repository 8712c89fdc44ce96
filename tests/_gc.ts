/**
 * A full garbage collection on demand, on Node.js, Deno and Bun, for tests
 * that check what stays reachable (with `WeakRef`).
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";

type Collect = () => void;

function findCollector(): Collect | undefined {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (typeof bun?.gc === "function") return () => bun.gc(true);
  const exposed = (globalThis as { gc?: Collect }).gc;
  if (typeof exposed === "function") return exposed;
  try {
    // V8 (Node.js, Deno): expose gc() to a fresh context and take it from there.
    v8.setFlagsFromString("--expose-gc");
    const collect: unknown = vm.runInNewContext("gc");
    if (typeof collect === "function") return collect as Collect;
  } catch {
    // Not available on this runtime: the caller says why it skips.
  }
  return undefined;
}

const collector = findCollector();

/** Why a test that needs {@link collectGarbage} cannot run here, or `undefined` when it can. */
export const noGcReason: string | undefined = collector === undefined
  ? "this runtime gives no way to force a garbage collection (Bun.gc, gc, or v8.setFlagsFromString + vm)"
  : undefined;

/**
 * Run a full collection after the current stack has unwound (so that no stale
 * stack slot keeps an object alive), then let finalisation settle.
 */
export async function collectGarbage(): Promise<void> {
  if (collector === undefined) throw new Error(noGcReason);
  for (let i = 0; i < 2; i++) {
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
    collector();
  }
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

/**
 * JavaScriptCore (Bun) finds pointers on the stack conservatively: a stale
 * slot can keep one random object alive through any number of collections
 * (seen in these tests on Bun only, a different chunk each time, in about one
 * run of the retention tests in three after the other session test files).
 * On Bun a check of what stays reachable therefore gets up to this many
 * trials, each with objects of its own; a reference that is really kept fails
 * them all. Node.js and Deno (V8, precise) get one.
 */
export const REACHABILITY_TRIALS = typeof (globalThis as { Bun?: unknown }).Bun === "object" ? 3 : 1;

/**
 * Run `trial` (which makes its own objects, collects and asserts what must be
 * unreachable) until it passes, at most {@link REACHABILITY_TRIALS} times.
 * Each failure before the last is printed; the last is thrown.
 */
export async function inReachabilityTrials(name: string, trial: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await trial();
      return;
    } catch (error) {
      if (attempt >= REACHABILITY_TRIALS) throw error;
      const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
      console.log(`${name}: trial ${attempt} of ${REACHABILITY_TRIALS} failed (${message}); trying again with fresh objects (conservative stack scanning)`);
    }
  }
}
