/**
 * The logic layer's switchboard: handlers routed by message id, kept apart
 * from the I/O layer.
 *
 * @module
 */

import type { Handler } from "./session.ts";

/**
 * Ids below this are routed through an array indexed by id (at most 32 KiB of
 * it), higher ones through a map: a lookup per frame on every session, so it
 * is kept to an array read for the ids most protocols use.
 */
const TABLE_IDS = 4096;

/**
 * Maps message ids to handlers, with an optional fallback for every other id.
 *
 * @example
 * ```ts
 * import { Router } from "@tlvkit/tlvkit";
 * const router = new Router()
 *   .handle(1, (request) => { request.reply("pong"); })
 *   .fallback((request) => { request.reply(request.body); }); // echo the rest
 * ```
 */
export class Router {
  /** Handlers of ids below {@link TABLE_IDS}, indexed by id (as long as the highest such id routed). */
  readonly #table: Array<Handler | undefined> = [];
  /** Handlers of higher ids. */
  readonly #routes = new Map<number, Handler>();
  #fallback: Handler | undefined;

  /**
   * Route frames with message id `id` to `handler`.
   *
   * @param id Message id, a non-negative integer.
   * @param handler Runs once per frame with that id; may be async.
   * @returns This router, for chaining.
   * @throws {RangeError} When the id is not a non-negative integer.
   * @throws {Error} When the id already has a handler.
   * @example
   * ```ts
   * import { Router } from "@tlvkit/tlvkit";
   * new Router().handle(7, async (request) => { request.reply("done"); });
   * ```
   */
  handle(id: number, handler: Handler): this {
    if (!Number.isInteger(id) || id < 0) {
      throw new RangeError(`Cannot register handler: message id ${id} is not a non-negative integer`);
    }
    if (typeof handler !== "function") throw new TypeError(`Cannot register handler for message id ${id}: not a function`);
    if ((id < TABLE_IDS ? this.#table[id] : this.#routes.get(id)) !== undefined) {
      throw new Error(`Cannot register handler: message id ${id} already has one`);
    }
    if (id < TABLE_IDS) {
      // Filled with undefined, not left with holes: lookups stay on the fast path.
      while (this.#table.length <= id) this.#table.push(undefined);
      this.#table[id] = handler;
    } else {
      this.#routes.set(id, handler);
    }
    return this;
  }

  /**
   * Handle every frame whose id has no handler of its own.
   *
   * @param handler Runs for unrouted frames; replaces any earlier fallback.
   * @returns This router, for chaining.
   * @example
   * ```ts
   * import { Router } from "@tlvkit/tlvkit";
   * new Router().fallback((request) => { request.reply(request.body); });
   * ```
   */
  fallback(handler: Handler): this {
    if (typeof handler !== "function") throw new TypeError("Cannot register fallback: not a function");
    this.#fallback = handler;
    return this;
  }

  /**
   * The handler for a message id: its own, else the fallback, else `undefined`.
   *
   * @param id Message id.
   * @returns The handler, if any.
   * @example
   * ```ts
   * import { Router } from "@tlvkit/tlvkit";
   * new Router().route(5); // undefined
   * ```
   */
  route(id: number): Handler | undefined {
    // Per frame: an array read for small ids, no hashing when no large id is routed.
    const table = this.#table;
    if (id < table.length) return table[id] ?? this.#fallback;
    if (this.#routes.size === 0) return this.#fallback;
    return this.#routes.get(id) ?? this.#fallback;
  }
}
