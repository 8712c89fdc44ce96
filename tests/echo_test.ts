import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { echo, encodeFrame, type Frame, type Handler, Router, serve, type Server } from "../mod.ts";
import type { Connection } from "../src/transport/types.ts";
import { sleep, until, within } from "./_async.ts";
import { concat } from "./_bytes.ts";
import { type RawPeer, rawPeer } from "./_raw_peer.ts";
import { runSeed, SeededRandom } from "./_seeded_random.ts";

const HOST = "127.0.0.1";
const utf8 = new TextEncoder();

const servers: Server[] = [];
const raws: Connection[] = [];

after(async () => {
  for (const raw of raws) raw.abort();
  await Promise.all(servers.map((server) => server.close({ drainTimeout: 100 })));
});

async function start(router: Router, borrowBodies: boolean): Promise<Server> {
  const server = await serve({ host: HOST, port: 0, router, borrowBodies });
  servers.push(server);
  return server;
}

async function peer(server: Server): Promise<RawPeer> {
  const raw = await rawPeer(server.address.port);
  raws.push(raw.conn);
  return raw;
}

function summary(frames: Frame[]): string[] {
  return frames.map((frame) => `${frame.id}:${Array.from(frame.body).join(",")}`);
}

/** Resolves after a few milliseconds: the reply of an async handler comes later than the frames after it. */
const slowly: Handler = async (request) => {
  const body = request.body.slice();
  await sleep(5);
  request.reply(concat([utf8.encode("late:"), body]));
};

for (const borrowBodies of [false, true]) {
  describe(`echo (borrowBodies: ${borrowBodies})`, () => {
    it("replies each frame with its own id and body, whether it is the fallback or an id's own handler", async () => {
      const router = new Router().handle(9, echo).handle(70, () => {}).fallback(echo);
      const server = await start(router, borrowBodies);
      const raw = await peer(server);
      const sent: Frame[] = [
        { id: 9, body: utf8.encode("nine") },
        { id: 0, body: new Uint8Array(0) },
        { id: 70, body: utf8.encode("no reply") },
        { id: 65535, body: new Uint8Array(5000).fill(7) },
        { id: 1, body: utf8.encode("x") },
      ];
      raw.conn.write(concat(sent.map((frame) => encodeFrame(frame.id, frame.body))));
      const expected = sent.filter((frame) => frame.id !== 70);
      await until(() => raw.frames().length >= expected.length, 5000, "the echoes");
      await sleep(20);
      assert.deepEqual(summary(raw.frames()), summary(expected));
      const stats = server.stats();
      assert.equal(stats.framesIn, 5);
      assert.equal(stats.framesOut, 4);
    });

    it("sends back chunks of whole echoed frames, and still closes on a frame over the body limit among them", async () => {
      const server = await serve({ host: HOST, port: 0, router: new Router().fallback(echo), borrowBodies, maxBody: 100 });
      servers.push(server);
      const raw = await peer(server);
      const small = [encodeFrame(1, utf8.encode("one")), encodeFrame(2, new Uint8Array(100).fill(2)), encodeFrame(3, new Uint8Array(0))];
      for (let i = 0; i < 20; i++) {
        raw.conn.write(concat(small));
        await until(() => raw.frames().length >= 3 * (i + 1), 5000, `the echoes of write ${i}`);
      }
      assert.deepEqual(raw.frames().slice(0, 3).map((frame) => frame.id), [1, 2, 3]);
      assert.deepEqual(concat(raw.chunks), concat(Array.from({ length: 20 }, () => concat(small))));
      let stats = server.stats();
      assert.equal(stats.framesIn, 60);
      assert.equal(stats.framesOut, 60);
      assert.equal(stats.bytesIn, 20 * concat(small).length);
      assert.equal(stats.bytesOut, 20 * concat(small).length);
      // A whole chunk of echoes but for a header announcing 101 bytes: the frames before it are answered, then the close.
      const tooLarge = concat([encodeFrame(4, utf8.encode("four")), encodeFrame(5, new Uint8Array(101))]);
      raw.conn.write(tooLarge);
      await within(raw.closed, 5000, "the close after a frame over the limit");
      assert.deepEqual(raw.frames().slice(60).map((frame) => frame.id), [4]);
      await until(() => server.stats().closes["frame-too-large"] === 1, 5000, "the frame-too-large close");
      stats = server.stats();
      assert.equal(stats.framesIn, 61);
      assert.equal(stats.framesOut, 61);
    });

    it("answers chunks that end inside a header or a body after whole echoed frames", async () => {
      const server = await start(new Router().fallback(echo), borrowBodies);
      const raw = await peer(server);
      const frames = [encodeFrame(1, utf8.encode("a")), encodeFrame(2, utf8.encode("bb")), encodeFrame(3, utf8.encode("ccc"))];
      const stream = concat([...frames, ...frames, ...frames]);
      // Whole frames, then 1, 2 or 3 bytes of a header, or a header and part of a body.
      const cuts = [frames[0]!.length + 1, 2 * frames[0]!.length + frames[1]!.length + 2, 18, 27, 35, stream.length];
      let from = 0;
      for (const to of cuts) {
        raw.conn.write(stream.slice(from, to));
        from = to;
        await sleep(15);
      }
      await until(() => raw.frames().length >= 9, 5000, "nine echoes");
      assert.deepEqual(concat(raw.chunks), stream);
    });

    it("keeps request order behind an async handler's pending reply", async () => {
      const router = new Router().handle(1, slowly).fallback(echo);
      const server = await start(router, borrowBodies);
      const raw = await peer(server);
      const frames = [[1, "a"], [2, "b"], [3, "c"], [1, "d"], [4, "e"], [5, "f"]] as const;
      raw.conn.write(concat(frames.map(([id, text]) => encodeFrame(id, utf8.encode(text)))));
      await until(() => raw.frames().length >= frames.length, 5000, "every reply");
      const replies = raw.frames().map((frame) => `${frame.id}:${new TextDecoder().decode(frame.body)}`);
      assert.deepEqual(replies, ["1:late:a", "2:b", "3:c", "1:late:d", "4:e", "5:f"]);
    });

    it("gives the replies a handler of one's own doing the same gives, for random streams split at random", async () => {
      const seed = runSeed();
      const random = new SeededRandom(seed);
      // The same routes twice: once to echo itself, once to a wrapper the server cannot tell from any handler.
      const wrapped: Handler = (request) => echo(request);
      const sync: Handler = (request) => {
        request.reply(utf8.encode(`sync:${request.body.length}`), 3);
      };
      const direct = await start(new Router().handle(1, slowly).handle(2, sync).fallback(echo), borrowBodies);
      const viaWrapper = await start(new Router().handle(1, slowly).handle(2, sync).fallback(wrapped), borrowBodies);
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 300; i++) {
        const id = random.pick([1, 2, 4, 4, 4, 5, 5, 6, 7, 65535]);
        frames.push(encodeFrame(id, random.bytes(random.pick([0, 1, 3, 64, 700, 4096]))));
      }
      const stream = concat(frames);
      // Cut after a whole frame half the time (chunks of whole frames, which a
      // server may send back as they are when every one is an echo), anywhere otherwise.
      const ends: number[] = [];
      for (let i = 0, end = 0; i < frames.length; i++) ends.push(end += frames[i]!.length);
      const cuts: number[] = [];
      for (let at = 0; at < stream.length;) {
        if (random.next() < 0.5) at = ends.find((end) => end > at + random.int(0, 3000)) ?? stream.length;
        else at = Math.min(stream.length, at + random.int(1, 9000));
        cuts.push(at);
      }
      const results: string[][] = [];
      for (const server of [direct, viaWrapper]) {
        const raw = await peer(server);
        let from = 0;
        for (const to of cuts) {
          raw.conn.write(stream.slice(from, to));
          from = to;
          if (random.next() < 0.3) await sleep(1);
        }
        await until(() => raw.frames().length >= frames.length, 10_000, `all ${frames.length} replies (seed ${seed})`);
        results.push(summary(raw.frames()));
      }
      assert.equal(results[0]!.length, frames.length, `seed ${seed}`);
      assert.deepEqual(results[0], results[1], `seed ${seed}`);
      assert.equal(direct.stats().framesOut, viaWrapper.stats().framesOut);
    });
  });
}

describe("echo called as a handler", () => {
  it("replies the request's body under its id", () => {
    const replies: [Uint8Array | string, number | undefined][] = [];
    const body = utf8.encode("hi");
    const request = {
      id: 12,
      body,
      reply: (reply: Uint8Array | string, id?: number) => {
        replies.push([reply, id]);
        return true;
      },
    };
    void echo(request as unknown as Parameters<Handler>[0]);
    assert.equal(replies.length, 1);
    assert.equal(replies[0]![0], body);
  });
});
