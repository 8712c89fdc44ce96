/**
 * The bundled application as a message hub (`tlvkit serve --pubsub`,
 * docs/protocol.md#publish-and-subscribe): the bundled HELLO/echo app plus six
 * reserved ids whose JSON requests subscribe a session to topics, publish,
 * broadcast, push to one session on any node, and say who the session is.
 * Bad requests get the bundled app's ERROR frames; the session stays open.
 *
 * @module
 */

import { type BundledApp, createBundledApp, ERROR_ID, replyError } from "./bundled_app.ts";
import { FrameLayout } from "./frame_layout.ts";
import type { Request } from "./session.ts";
import type { PublishOptions } from "./server.ts";
import { encodeUtf8 } from "./_utf8.ts";

/** Message id of SUBSCRIBE requests (0xFF01). */
export const SUBSCRIBE_ID = 0xff01;
/** Message id of UNSUBSCRIBE requests (0xFF02). */
export const UNSUBSCRIBE_ID = 0xff02;
/** Message id of PUBLISH requests (0xFF03). */
export const PUBLISH_ID = 0xff03;
/** Message id of BROADCAST requests (0xFF04). */
export const BROADCAST_ID = 0xff04;
/** Message id of PUSH requests (0xFF05). */
export const PUSH_ID = 0xff05;
/** Message id of WHOAMI requests (0xFF06). */
export const WHOAMI_ID = 0xff06;

/** Ids a PUBLISH, BROADCAST or PUSH may not deliver on: the requests' own and ERROR's. */
const RESERVED = new Set([SUBSCRIBE_ID, UNSUBSCRIBE_ID, PUBLISH_ID, BROADCAST_ID, PUSH_ID, WHOAMI_ID, ERROR_ID]);

const NAMES: Record<number, string> = {
  [SUBSCRIBE_ID]: "SUBSCRIBE",
  [UNSUBSCRIBE_ID]: "UNSUBSCRIBE",
  [PUBLISH_ID]: "PUBLISH",
  [BROADCAST_ID]: "BROADCAST",
  [PUSH_ID]: "PUSH",
  [WHOAMI_ID]: "WHOAMI",
};

/** What the hub asks of its server: a `Server` has all of it. */
export interface PubSubServer {
  /** See `Server.publish`. */
  publish(topic: string, id: number, body: Uint8Array, options?: PublishOptions): number;
  /** See `Server.broadcast`. */
  broadcast(id: number, body: Uint8Array, options?: PublishOptions): number;
  /** See `Server.push`. */
  push(sessionId: number, id: number, body: Uint8Array): Promise<boolean>;
  /** The server's cluster, for this node's name. */
  readonly cluster: { readonly node: string };
}

/** The bundled application with the publish/subscribe ids. */
export interface PubSubApp extends BundledApp {
  /**
   * Give the app the server it runs in: the router is built before the
   * server, and PUBLISH, BROADCAST, PUSH and WHOAMI need it. Until then they
   * answer an ERROR frame.
   */
  attach(server: PubSubServer): void;
}

/** A request that is not a valid publish/subscribe request. */
class BadRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadRequestError";
  }
}

type Fields = Record<string, unknown>;

function fieldsOf(request: Request, name: string, emptyIsObject = false): Fields {
  if (emptyIsObject && request.body.length === 0) return {};
  let text: string;
  try {
    text = request.text();
  } catch {
    throw new BadRequestError(`${name} body is not valid UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadRequestError(`${name} body is not valid JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BadRequestError(`${name} body is not a JSON object`);
  }
  return value as Fields;
}

function topicOf(fields: Fields, name: string): string {
  const topic = fields["topic"];
  if (typeof topic !== "string" || topic === "") throw new BadRequestError(`${name} field "topic" must be a non-empty string`);
  return topic;
}

function idOf(fields: Fields, name: string, layout: FrameLayout): number {
  if (!Object.hasOwn(fields, "id")) throw new BadRequestError(`${name} field "id" is missing`);
  const id = fields["id"];
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 65535) {
    throw new BadRequestError(`${name} field "id" must be an integer from 0 to 65535`);
  }
  if (id > layout.maxId) throw new BadRequestError(`${name} field "id" ${id} does not fit the ${layout.idBytes}-byte id field`);
  if (RESERVED.has(id)) throw new BadRequestError(`${name} field "id" ${id} is reserved`);
  return id;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function dataOf(fields: Fields, name: string, layout: FrameLayout): Uint8Array {
  const hasData = Object.hasOwn(fields, "data");
  const hasBase64 = Object.hasOwn(fields, "base64");
  if (hasData === hasBase64) throw new BadRequestError(`${name} needs exactly one of the fields "data" and "base64"`);
  let body: Uint8Array;
  if (hasData) {
    const data = fields["data"];
    if (typeof data !== "string") throw new BadRequestError(`${name} field "data" must be a string`);
    body = encodeUtf8(data);
  } else {
    const text = fields["base64"];
    if (typeof text !== "string" || !BASE64.test(text)) throw new BadRequestError(`${name} field "base64" must be a base64 string`);
    const binary = atob(text);
    body = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) body[i] = binary.charCodeAt(i);
  }
  if (body.length > layout.maxBody) {
    throw new BadRequestError(`${name} body to deliver is ${body.length} bytes, over the limit of ${layout.maxBody}`);
  }
  return body;
}

/** Run `action`, a session's or server's topic call, turning its complaints about the topic into the peer's mistake. */
function topicCall<T>(action: () => T): T {
  try {
    return action();
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) throw new BadRequestError(error.message);
    throw error;
  }
}

function reply(request: Request, value: unknown, layout: FrameLayout): void {
  const body = encodeUtf8(JSON.stringify(value));
  if (body.length > layout.maxBody) throw new BadRequestError(`reply would be ${body.length} bytes, over the limit of ${layout.maxBody}`);
  request.reply(body);
}

/**
 * Build the bundled application with the publish/subscribe ids, for a frame
 * layout with 2- or 4-byte ids. Its handlers keep no request body, so it may
 * run with `borrowBodies`.
 *
 * @param layout The layout the server speaks.
 * @returns The router, the error hook, and `attach` for the server.
 * @throws {RangeError} When the layout's ids are narrower than 2 bytes.
 * @example
 * ```ts
 * import { serve } from "@tlvkit/tlvkit";
 * import { createPubSubApp } from "@tlvkit/tlvkit/cli";
 * const app = createPubSubApp();
 * const server = await serve({ port: 0, router: app.router, onError: app.onError });
 * app.attach(server);
 * await server.close();
 * ```
 */
export function createPubSubApp(layout: FrameLayout = FrameLayout.DEFAULT): PubSubApp {
  if (layout.idBytes < 2) throw new RangeError(`Cannot serve publish/subscribe ids with ${layout.idBytes}-byte ids: they need 2 or 4`);
  const app = createBundledApp(layout);
  let server: PubSubServer | undefined;
  const hub = (name: string): PubSubServer => {
    if (server === undefined) throw new BadRequestError(`${name} is not available yet: the server is starting`);
    return server;
  };
  const route = (id: number, handle: (request: Request, name: string) => void | Promise<void>): void => {
    const name = NAMES[id]!;
    app.router.handle(id, async (request) => {
      try {
        await handle(request, name);
      } catch (error) {
        // A bad request is the peer's mistake: answer it, log nothing.
        if (error instanceof BadRequestError) {
          replyError(request, layout, error.message);
        } else {
          throw error;
        }
      }
    });
  };
  route(SUBSCRIBE_ID, (request, name) => {
    const topic = topicOf(fieldsOf(request, name), name);
    topicCall(() => request.session.subscribe(topic));
    reply(request, { ok: true, topic }, layout);
  });
  route(UNSUBSCRIBE_ID, (request, name) => {
    const topic = topicOf(fieldsOf(request, name), name);
    const was = request.session.unsubscribe(topic);
    reply(request, { ok: true, topic, was }, layout);
  });
  route(PUBLISH_ID, (request, name) => {
    const fields = fieldsOf(request, name);
    const topic = topicOf(fields, name);
    const id = idOf(fields, name, layout);
    const body = dataOf(fields, name, layout);
    const server = hub(name);
    topicCall(() => server.publish(topic, id, body, { except: request.session.id }));
    reply(request, { ok: true }, layout);
  });
  route(BROADCAST_ID, (request, name) => {
    const fields = fieldsOf(request, name);
    const id = idOf(fields, name, layout);
    const body = dataOf(fields, name, layout);
    hub(name).broadcast(id, body, { except: request.session.id });
    reply(request, { ok: true }, layout);
  });
  route(PUSH_ID, async (request, name) => {
    const fields = fieldsOf(request, name);
    const session = fields["session"];
    if (typeof session !== "number" || !Number.isSafeInteger(session) || session < 0) {
      throw new BadRequestError(`${name} field "session" must be a non-negative integer`);
    }
    const id = idOf(fields, name, layout);
    const body = dataOf(fields, name, layout);
    // Everything is read from the body before the wait: it may be borrowed.
    const ok = await hub(name).push(session, id, body);
    reply(request, { ok }, layout);
  });
  route(WHOAMI_ID, (request, name) => {
    fieldsOf(request, name, true);
    reply(request, { session: request.session.id, node: hub(name).cluster.node }, layout);
  });
  return {
    router: app.router,
    onError: app.onError,
    attach: (target) => {
      server = target;
    },
  };
}
