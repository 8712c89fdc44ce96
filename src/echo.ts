/**
 * The built-in echo handler: a request's reply is its own frame.
 *
 * @module
 */

import type { Handler, Request } from "./session.ts";

/**
 * Replies to each request with its own body under its own id: an echo.
 *
 * Route ids to it (`router.handle(id, echo)`, `router.fallback(echo)`) rather
 * than to a handler of your own that does the same: a server answers a frame
 * routed to `echo` itself, without making a request object or calling a
 * handler, whenever no earlier reply is still pending on the session; and a
 * chunk read from the socket that holds nothing but whole such frames is
 * written back as it came, with no body views, dispatch or copy (on Bun not
 * even the copy into reused memory). The replies, their order and the
 * counters are the same either way; the server's CPU per echoed frame dropped
 * by 1–9 % in our benchmarks (README, Benchmarks). A client dispatches
 * replies, not requests, and does not use it.
 *
 * @param request The request to answer.
 * @example
 * ```ts
 * import { echo, Router } from "@tlvkit/tlvkit";
 * const router = new Router()
 *   .handle(1, (request) => { request.reply("pong"); })
 *   .fallback(echo); // every other id comes back as it was sent
 * ```
 */
export const echo: Handler = (request: Request): void => {
  request.reply(request.body);
};
