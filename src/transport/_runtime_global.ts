/**
 * The runtime global an adapter is built on (`Deno`, `Bun`), or the one error
 * every adapter throws when loaded on another runtime. Private to the adapters.
 *
 * @module
 */

/**
 * The global `name`, typed as the adapter's structural view of it.
 *
 * @param name `Deno` or `Bun`.
 * @returns The global.
 * @throws {Error} When this runtime has no such global.
 */
export function runtimeGlobal<T extends object>(name: "Deno" | "Bun"): T {
  const value = (globalThis as Record<string, unknown>)[name];
  if (typeof value !== "object" || value === null) {
    throw new Error(`Using the ${name} transport in an incompatible environment: the ${name} global is missing`);
  }
  return value as T;
}
