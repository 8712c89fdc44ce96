/**
 * Runtime detection, in one function in one file.
 *
 * @module
 */

import type { RuntimeName, Transport } from "./types.ts";

/**
 * Which runtime is running this code: `"deno"`, `"bun"` or `"node"`.
 *
 * @returns The runtime's name.
 * @example
 * ```ts
 * import { detectRuntime } from "./detect.ts";
 * console.log(detectRuntime()); // "deno" when run by Deno
 * ```
 */
export function detectRuntime(): RuntimeName {
  const g = globalThis as Record<string, unknown>;
  if (typeof g["Deno"] === "object" && g["Deno"] !== null) return "deno";
  if (typeof g["Bun"] === "object" && g["Bun"] !== null) return "bun";
  return "node";
}

/**
 * Load the socket adapter for a runtime: the one running this code unless
 * `runtime` says otherwise (useful only where a runtime emulates another's API,
 * as Bun and Deno do for `node:net`).
 *
 * @param runtime The adapter to load; defaults to {@link detectRuntime}.
 * @returns The adapter.
 * @throws {Error} When the chosen adapter cannot run on this runtime.
 * @example
 * ```ts
 * import { loadTransport } from "./detect.ts";
 * const transport = await loadTransport();
 * console.log(transport.runtime);
 * ```
 */
export async function loadTransport(runtime: RuntimeName = detectRuntime()): Promise<Transport> {
  switch (runtime) {
    case "node":
      return (await import("./node.ts")).nodeTransport;
    case "deno":
      return (await import("./deno.ts")).denoTransport;
    case "bun":
      return (await import("./bun.ts")).bunTransport;
    default:
      throw new RangeError(`Invalid runtime "${String(runtime)}": use "node", "deno" or "bun"`);
  }
}
