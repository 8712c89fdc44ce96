/**
 * {@link BusMessage}s as bytes, for buses that carry bytes (Redis pub/sub,
 * the pipes between worker processes). One layout for every kind, a 28-byte
 * header, then a name (a topic or a node's name), then the body:
 *
 * ```text
 * 0      version (1)
 * 1      kind: 1 broadcast, 2 publish, 3 push, 4 pushed, 5 heartbeat, 6 leave
 * 2..5   origin node number (u32)
 * 6..9   target node number (u32; push, pushed)
 * 10..17 a session id (f64): except (broadcast, publish), session (push);
 *        sessions held (heartbeat)
 * 18..21 request (u32; push, pushed); interval in ms (heartbeat)
 * 22..25 message id (u32; broadcast, publish, push); ok (pushed, 0 or 1)
 * 26..27 name length in bytes (u16)
 * 28..   name (UTF-8), then the body
 * ```
 *
 * Numbers are big-endian.
 *
 * @module
 */

import type { BusMessage } from "./bus.ts";

const VERSION = 1;
const HEADER = 28;
const KINDS = ["broadcast", "publish", "push", "pushed", "heartbeat", "leave"] as const;
const KIND_CODE: Record<BusMessage["kind"], number> = {
  broadcast: 1,
  publish: 2,
  push: 3,
  pushed: 4,
  heartbeat: 5,
  leave: 6,
};

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const EMPTY: Uint8Array = new Uint8Array(0);

/** A message that is not one {@link encodeBusMessage} wrote. */
export class BusMessageError extends Error {
  /** @param message What is wrong. */
  constructor(message: string) {
    super(`Invalid bus message: ${message}`);
    this.name = "BusMessageError";
  }
}

/** Encode `message` in one buffer. */
export function encodeBusMessage(message: BusMessage): Uint8Array {
  let name: Uint8Array = EMPTY;
  let body: Uint8Array = EMPTY;
  let target = 0;
  let session = 0;
  let request = 0;
  let id = 0;
  switch (message.kind) {
    case "broadcast":
      session = message.except;
      id = message.id;
      body = message.body;
      break;
    case "publish":
      name = utf8.encode(message.topic);
      session = message.except;
      id = message.id;
      body = message.body;
      break;
    case "push":
      target = message.target;
      session = message.session;
      request = message.request;
      id = message.id;
      body = message.body;
      break;
    case "pushed":
      target = message.target;
      request = message.request;
      id = message.ok ? 1 : 0;
      break;
    case "heartbeat":
      name = utf8.encode(message.node);
      session = message.sessions;
      request = message.interval;
      break;
    case "leave":
      name = utf8.encode(message.node);
      break;
  }
  if (name.length > 0xffff) throw new RangeError(`A bus message's name is at most 65535 bytes, got ${name.length}`);
  const out = new Uint8Array(HEADER + name.length + body.length);
  const view = new DataView(out.buffer);
  out[0] = VERSION;
  out[1] = KIND_CODE[message.kind];
  view.setUint32(2, message.origin);
  view.setUint32(6, target);
  view.setFloat64(10, session);
  view.setUint32(18, request);
  view.setUint32(22, id);
  view.setUint16(26, name.length);
  out.set(name, HEADER);
  out.set(body, HEADER + name.length);
  return out;
}

/**
 * Decode what {@link encodeBusMessage} wrote. The body is a view of `bytes`.
 *
 * @throws {BusMessageError} When `bytes` is not such a message.
 */
export function decodeBusMessage(bytes: Uint8Array): BusMessage {
  if (bytes.length < HEADER) throw new BusMessageError(`${bytes.length} bytes, shorter than its header`);
  if (bytes[0] !== VERSION) throw new BusMessageError(`version ${bytes[0]}, not ${VERSION}`);
  const kind = KINDS[bytes[1]! - 1];
  if (kind === undefined) throw new BusMessageError(`unknown kind ${bytes[1]}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const origin = view.getUint32(2);
  const target = view.getUint32(6);
  const session = view.getFloat64(10);
  const request = view.getUint32(18);
  const id = view.getUint32(22);
  const nameLength = view.getUint16(26);
  if (HEADER + nameLength > bytes.length) throw new BusMessageError(`a name of ${nameLength} bytes past its end`);
  let name: string;
  try {
    name = utf8Decoder.decode(bytes.subarray(HEADER, HEADER + nameLength));
  } catch {
    throw new BusMessageError("a name that is not UTF-8");
  }
  const body = bytes.subarray(HEADER + nameLength);
  switch (kind) {
    case "broadcast":
      return { kind, origin, id, body, except: session };
    case "publish":
      return { kind, origin, topic: name, id, body, except: session };
    case "push":
      return { kind, origin, target, session, id, body, request };
    case "pushed":
      return { kind, origin, target, request, ok: id === 1 };
    case "heartbeat":
      return { kind, origin, node: name, sessions: session, interval: request };
    case "leave":
      return { kind, origin, node: name };
  }
}
