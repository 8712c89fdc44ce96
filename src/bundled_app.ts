/**
 * The bundled application of `tlvkit serve`
 * (docs/protocol.md#the-bundled-application): HELLO (1001) answers a JSON
 * greeting, every other id is echoed, and anything wrong is answered with an
 * ERROR frame (65535) while the session stays open.
 *
 * @module
 */

import { FrameLayout } from "./frame_layout.ts";
import { echo } from "./echo.ts";
import { Router } from "./router.ts";
import type { Request } from "./session.ts";
import type { ErrorContext } from "./server.ts";
import { encodeUtf8 } from "./_utf8.ts";

/** Message id of HELLO requests. */
export const HELLO_ID = 1001;
/** Message id of ERROR frames. */
export const ERROR_ID = 65535;
/** Prefix the server puts before a HELLO's `data`. */
export const HELLO_REPLY_PREFIX = "server has received msg, msg data is ";


/** Raised inside the HELLO handler for a request that is not a valid HELLO. */
class BadHelloError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadHelloError";
  }
}

/** The bundled application: its router and its error hook. */
export interface BundledApp {
  /** HELLO on 1001, echo on every other id. */
  readonly router: Router;
  /** Answers a failed request with an ERROR frame. Pass as the server's `onError`. */
  readonly onError: (error: Error, context: ErrorContext) => void;
}

/**
 * Answer `request` with an ERROR frame saying `reason`; the session stays
 * open. Shared with the publish/subscribe ids of `serve --pubsub`.
 *
 * @param request The request that failed.
 * @param layout The layout the server speaks (for the ERROR id and `maxBody`).
 * @param reason What was wrong, in words for people.
 */
export function replyError(request: Request, layout: FrameLayout, reason: string): void {
  const errorId = Math.min(ERROR_ID, layout.maxId);
  let body = encodeUtf8(JSON.stringify({ error: reason, msgId: request.id }));
  if (body.length > layout.maxBody) body = encodeUtf8(JSON.stringify({ error: "error", msgId: request.id }));
  if (body.length > layout.maxBody) body = new Uint8Array(0);
  request.reply(body, errorId);
}

function hello(request: Request, layout: FrameLayout): void {
  let text: string;
  try {
    text = request.text();
  } catch {
    throw new BadHelloError("HELLO body is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadHelloError("HELLO body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BadHelloError("HELLO body is not a JSON object");
  }
  const fields = value as Record<string, unknown>;
  if (!Object.hasOwn(fields, "id")) throw new BadHelloError('HELLO field "id" is missing');
  const id = fields["id"];
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 65535) {
    throw new BadHelloError('HELLO field "id" must be an integer from 0 to 65535');
  }
  if (id > layout.maxId) {
    throw new BadHelloError(`HELLO field "id" ${id} does not fit the ${layout.idBytes}-byte id field`);
  }
  if (!Object.hasOwn(fields, "data")) throw new BadHelloError('HELLO field "data" is missing');
  const data = fields["data"];
  if (typeof data !== "string") throw new BadHelloError('HELLO field "data" must be a string');
  // Same object, other fields kept in order, data replaced. An "error" field is
  // dropped: a HELLO reply never has one, so that replies on id 65535 stay
  // distinguishable from ERROR frames.
  const reply: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) {
    if (key === "error") continue;
    reply[key] = key === "data" ? HELLO_REPLY_PREFIX + data : fields[key];
  }
  const replyText = JSON.stringify(reply);
  const body = encodeUtf8(replyText);
  if (body.length > layout.maxBody) {
    throw new BadHelloError(`HELLO reply would be ${body.length} bytes, over the limit of ${layout.maxBody}`);
  }
  request.reply(body, id);
}

/**
 * Build the bundled application for a frame layout. Its handlers keep no
 * request body, so it may run with `borrowBodies`, as `tlvkit serve` does.
 *
 * @param layout The layout the server speaks (for `maxBody` and id widths).
 * @returns The router and the error hook.
 * @example
 * ```ts
 * import { FrameLayout, serve } from "@tlvkit/tlvkit";
 * import { createBundledApp } from "@tlvkit/tlvkit/cli";
 * const app = createBundledApp(FrameLayout.DEFAULT);
 * const server = await serve({ port: 0, router: app.router, onError: app.onError, borrowBodies: true });
 * await server.close();
 * ```
 */
export function createBundledApp(layout: FrameLayout = FrameLayout.DEFAULT): BundledApp {
  const router = new Router()
    .handle(HELLO_ID, (request) => {
      try {
        hello(request, layout);
      } catch (error) {
        // A bad HELLO is the peer's mistake, not a server error: answer it, log nothing.
        if (!(error instanceof BadHelloError)) throw error;
        replyError(request, layout, error.message);
      }
    })
    .fallback(echo);
  const onError = (error: Error, context: ErrorContext): void => {
    const request = context.request;
    if (request === undefined || request.session.state === "closed") return;
    replyError(request, layout, `handler failed: ${error.message}`);
  };
  return { router, onError };
}
