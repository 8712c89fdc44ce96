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
