/**
 * The echo handler: a request's reply is its own frame.
 *
 * @module
 */

import type { Handler, Request } from "./session.ts";

/**
 * Replies to each request with its own body under its own id: an echo.
 *
 * An ordinary handler, exported because most servers want one (the bundled
 * server's fallback is `echo`, and a client's keep-alive pings need a server
 * that echoes their id). The server treats it like any handler of your own.
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
