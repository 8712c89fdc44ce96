/**
 * The usual HELLO answered straight from its bytes. A greeting exactly as the
 * original design's client writes it, `{"id":N,"data":"S"}` with no spaces, N
 * a JSON integer and S printable ASCII with no quote or backslash, has as its
 * reply the same bytes with the prefix put before S: what decoding the body,
 * `JSON.parse`, the field checks, building the reply text and encoding it
 * (bundled_app.ts) would give, without any of that work. On V8 those steps
 * cost close to a microsecond per greeting, far more than the rest of
 * answering it. Any other body, or one whose answer is an ERROR frame, is
 * left to the general handler. Private to the bundled application.
 *
 * @module
 */

import { ByteSlab } from "./_byte_slab.ts";
import type { FrameLayout } from "./frame_layout.ts";
import type { Request } from "./session.ts";

/** `{"id":`, the body's first bytes. */
const HEAD = [0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a];
/** `,"data":"`, between the id and the data. */
const MIDDLE = [0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x22, 0x3a, 0x22];
/** `{"id":0,"data":""}`: the shortest greeting. */
const SHORTEST = HEAD.length + 1 + MIDDLE.length + 2;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const CLOSE_BRACE = 0x7d;
const DIGIT_0 = 0x30;
/** More digits than 65535 has: never an id in range. */
const MAX_DIGITS = 5;

/** Replies are carved from shared slabs, as `encodeUtf8` carves reply text (`_utf8.ts`). */
const replySlab = new ByteSlab(64 * 1024, 16 * 1024);

/**
 * Answer `request`, a HELLO, if its body is a plain greeting (see the module
 * doc) whose reply fits `layout`.
 *
 * @param prefix The reply prefix, encoded (ASCII).
 * @returns `true` when answered; `false` when the general handler must answer.
 */
export function answerPlainHello(request: Request, layout: FrameLayout, prefix: Uint8Array): boolean {
  const body = request.body;
  const length = body.length;
  if (length < SHORTEST) return false;
  for (let i = 0; i < HEAD.length; i++) if (body[i] !== HEAD[i]) return false;
  // The id: a JSON integer (no sign, no leading zero, no fraction or exponent).
  let pos = HEAD.length;
  let id = 0;
  const first = pos;
  while (pos < length) {
    const digit = body[pos]! - DIGIT_0;
    if (digit < 0 || digit > 9) break;
    if (pos - first === MAX_DIGITS) return false;
    id = id * 10 + digit;
    pos++;
  }
  const digits = pos - first;
  if (digits === 0 || (digits > 1 && body[first] === DIGIT_0)) return false;
  if (id > 65535 || id > layout.maxId) return false;
  if (length - pos < MIDDLE.length + 2) return false;
  for (let i = 0; i < MIDDLE.length; i++) if (body[pos + i] !== MIDDLE[i]) return false;
  pos += MIDDLE.length;
  const dataStart = pos;
  // The data: printable ASCII (and DEL), which JSON neither escapes nor needs to.
  const dataEnd = length - 2;
  for (; pos < dataEnd; pos++) {
    const byte = body[pos]!;
    if (byte < 0x20 || byte > 0x7f || byte === QUOTE || byte === BACKSLASH) return false;
  }
  if (body[dataEnd] !== QUOTE || body[dataEnd + 1] !== CLOSE_BRACE) return false;
  const size = length + prefix.length;
  if (size > layout.maxBody) return false;
  // The body up to the data's opening quote, the prefix, then the data and `"}`.
  const reply = replySlab.take(size);
  reply.set(body);
  reply.copyWithin(dataStart + prefix.length, dataStart, length);
  reply.set(prefix, dataStart);
  request.reply(reply, id);
  return true;
}
