import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FrameLayout, HELLO_REPLY_PREFIX, type Request, type Session } from "../mod.ts";
import { answerPlainHello } from "../src/_plain_hello.ts";
import { runSeed, SeededRandom } from "./_seeded_random.ts";

const utf8 = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const PREFIX = utf8.encode(HELLO_REPLY_PREFIX);

interface Answer {
  id: number;
  body: Uint8Array;
}

/** A HELLO request whose replies are recorded (copied: the fast path's bytes are a slab region). */
function helloRequest(body: Uint8Array): { request: Request; replies: Answer[] } {
  const replies: Answer[] = [];
  const request: Request = {
    id: 1001,
    body,
    session: {} as Session,
    reply(reply: Uint8Array | string, id = 1001): boolean {
      replies.push({ id, body: typeof reply === "string" ? utf8.encode(reply) : reply.slice() });
      return true;
    },
    text: () => strict.decode(body),
  };
  return { request, replies };
}

/**
 * docs/protocol.md#hello for a greeting of exactly the fields id and data: the
 * reply the general handler gives (JSON.stringify of the object, data prefixed), or
 * `undefined` when the body is no such greeting or the reply does not fit.
 */
function specReply(body: Uint8Array, layout: FrameLayout): Answer | undefined {
  let value: unknown;
  try {
    value = JSON.parse(strict.decode(body));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const fields = value as Record<string, unknown>;
  const keys = Object.keys(fields);
  if (keys.length !== 2 || keys[0] !== "id" || keys[1] !== "data") return undefined;
  const id = fields["id"];
  const data = fields["data"];
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 65535 || id > layout.maxId) return undefined;
  if (typeof data !== "string") return undefined;
  const reply = utf8.encode(JSON.stringify({ id, data: HELLO_REPLY_PREFIX + data }));
  return reply.length > layout.maxBody ? undefined : { id, body: reply };
}

const PRINTABLE = Array.from({ length: 0x80 - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).filter((c) => c !== '"' && c !== "\\");

function plainGreeting(random: SeededRandom): string {
  const id = random.pick([0, 1, 9, 10, 99, 1001, 65534, 65535, random.int(0, 65535)]);
  const length = random.pick([0, 1, 2, 31, random.int(0, 300)]);
  let data = "";
  for (let i = 0; i < length; i++) data += random.pick(PRINTABLE);
  return `{"id":${id},"data":"${data}"}`;
}

describe("the plain HELLO fast path", () => {
  const layout = FrameLayout.DEFAULT;

  it("answers plain greetings itself, with the reply docs/protocol.md gives", () => {
    const seed = runSeed();
    const random = new SeededRandom(seed);
    for (let n = 0; n < 2000; n++) {
      const text = plainGreeting(random);
      const body = utf8.encode(text);
      const { request, replies } = helloRequest(body);
      assert.equal(answerPlainHello(request, layout, PREFIX), true, `seed ${seed}: ${text} answered`);
      const expected = specReply(body, layout);
      assert.ok(expected !== undefined, `seed ${seed}: ${text} is a valid greeting`);
      assert.deepEqual(replies, [expected], `seed ${seed}: reply to ${text}`);
    }
  });

  it("leaves every other body to the general handler", () => {
    const others = [
      "",
      '{"id":1,"data":"x"',
      '{"id": 1,"data":"x"}',
      '{"id":1, "data":"x"}',
      '{"id":1,"data":"x"} ',
      ' {"id":1,"data":"x"}',
      '\ufeff{"id":1,"data":"x"}',
      '{"id":01,"data":"x"}',
      '{"id":00,"data":"x"}',
      '{"id":-1,"data":"x"}',
      '{"id":1.0,"data":"x"}',
      '{"id":1e2,"data":"x"}',
      '{"id":,"data":"x"}',
      '{"id":65536,"data":"x"}',
      '{"id":100000,"data":"x"}',
      '{"id":"1","data":"x"}',
      '{"id":1,"data":x}',
      '{"id":1,"data":1}',
      '{"id":1,"data":"a\\"b"}',
      '{"id":1,"data":"a\\nb"}',
      '{"id":1,"data":"a\tb"}',
      '{"id":1,"data":"a\u0001b"}',
      '{"id":1,"data":"héllo"}',
      '{"id":1,"data":"x","z":1}',
      '{"id":1,"data":"x","error":"e"}',
      '{"data":"x","id":1}',
      '{"id":1,"id":2,"data":"x"}',
      '{"id":1,"data":"x"}}',
      '{"id":1,"data":"x""}',
      '{"ID":1,"data":"x"}',
    ];
    for (const text of others) {
      const { request, replies } = helloRequest(utf8.encode(text));
      assert.equal(answerPlainHello(request, layout, PREFIX), false, JSON.stringify(text));
      assert.equal(replies.length, 0);
    }
  });

  it("leaves ids over 65535 or the layout's largest, and replies over maxBody, to the general handler", () => {
    const wide = new FrameLayout({ idBytes: 4 });
    assert.equal(answerPlainHello(helloRequest(utf8.encode('{"id":65535,"data":"x"}')).request, wide, PREFIX), true);
    assert.equal(answerPlainHello(helloRequest(utf8.encode('{"id":65536,"data":"x"}')).request, wide, PREFIX), false);
    const narrow = new FrameLayout({ idBytes: 1 });
    assert.equal(answerPlainHello(helloRequest(utf8.encode('{"id":255,"data":"x"}')).request, narrow, PREFIX), true);
    assert.equal(answerPlainHello(helloRequest(utf8.encode('{"id":256,"data":"x"}')).request, narrow, PREFIX), false);
    const text = '{"id":7,"data":"0123456789"}';
    const fits = new FrameLayout({ maxBody: text.length + PREFIX.length });
    const over = new FrameLayout({ maxBody: text.length + PREFIX.length - 1 });
    const { request, replies } = helloRequest(utf8.encode(text));
    assert.equal(answerPlainHello(request, fits, PREFIX), true);
    assert.equal(replies[0]!.body.length, fits.maxBody);
    assert.equal(answerPlainHello(helloRequest(utf8.encode(text)).request, over, PREFIX), false);
  });

  it("never answers a mutated greeting differently from docs/protocol.md", () => {
    const seed = runSeed();
    const random = new SeededRandom(seed);
    const special = [0x22, 0x5c, 0x7b, 0x7d, 0x2c, 0x3a, 0x20, 0x30, 0x31, 0x39, 0x2d, 0x2e, 0x65, 0x00, 0x0a, 0x7f, 0x80, 0xc3, 0xff];
    let answered = 0;
    for (let n = 0; n < 3000; n++) {
      const bytes = [...utf8.encode(plainGreeting(random))];
      for (let m = random.int(1, 3); m > 0; m--) {
        const at = random.int(0, bytes.length - 1);
        const byte = random.next() < 0.7 ? random.pick(special) : random.int(0, 255);
        const kind = random.int(0, 2);
        if (kind === 0) bytes[at] = byte;
        else if (kind === 1) bytes.splice(at, 0, byte);
        else bytes.splice(at, 1);
      }
      const body = Uint8Array.from(bytes);
      const { request, replies } = helloRequest(body);
      if (!answerPlainHello(request, layout, PREFIX)) continue;
      answered++;
      const expected = specReply(body, layout);
      assert.ok(expected !== undefined, `seed ${seed}: answered ${JSON.stringify(new TextDecoder().decode(body))}, which is no plain greeting`);
      assert.deepEqual(replies, [expected], `seed ${seed}: reply to ${JSON.stringify(new TextDecoder().decode(body))}`);
    }
    // Mutations inside the data (or of one digit for another) keep a greeting plain.
    assert.ok(answered > 100, `seed ${seed}: only ${answered} mutated greetings were still plain`);
  });
});
