/**
 * A raw peer that speaks the publish/subscribe ids of `serve --pubsub`
 * (docs/protocol.md#publish-and-subscribe): one request at a time, its reply
 * (or ERROR frame) told apart from the frames delivered to it meanwhile.
 *
 * @module
 */

import { encodeFrame, type Frame } from "../mod.ts";
import { until } from "./_async.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";

/** Ids of the requests. */
export const SUBSCRIBE = 0xff01;
export const UNSUBSCRIBE = 0xff02;
export const PUBLISH = 0xff03;
export const BROADCAST = 0xff04;
export const PUSH = 0xff05;
export const WHOAMI = 0xff06;
export const ERROR = 65535;

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** A reply: its id and its JSON body. */
export interface Reply {
  id: number;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/** A connected peer. */
export interface PubSubPeer {
  readonly raw: RawPeer;
  /** Send request `id` with `body` (a value sent as JSON, or raw bytes) and wait for its reply or ERROR frame. */
  call(id: number, body: unknown): Promise<Reply>;
  /** The frames received on id `id`, bodies as text. */
  received(id: number): string[];
  /** Close at once. */
  abort(): void;
}

function isAnswer(frame: Frame): boolean {
  return frame.id === ERROR || (frame.id >= SUBSCRIBE && frame.id <= WHOAMI);
}

/** Connect to `127.0.0.1:port`. */
export async function pubsubPeer(port: number): Promise<PubSubPeer> {
  const raw = await rawPeer(port);
  return {
    raw,
    async call(id, body) {
      const before = raw.frames().filter(isAnswer).length;
      const bytes = body instanceof Uint8Array ? body : utf8.encode(JSON.stringify(body));
      raw.conn.write(encodeFrame(id, bytes));
      await until(() => raw.frames().filter(isAnswer).length > before, 20_000, `the answer to request ${id}`);
      const frame = raw.frames().filter(isAnswer)[before]!;
      return { id: frame.id, json: JSON.parse(text.decode(frame.body)) };
    },
    received: (id) => raw.frames().filter((frame) => frame.id === id).map((frame) => text.decode(frame.body)),
    abort: () => raw.conn.abort(),
  };
}
