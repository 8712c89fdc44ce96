import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { echo, encodeFrame, type Frame, type Handler, Router, serve, type Server } from "../mod.ts";
import type { Connection } from "../src/transport/types.ts";
import { sleep, until } from "./_async.ts";
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
      const cuts: number[] = [];
      for (let at = 0; at < stream.length;) {
        at = Math.min(stream.length, at + random.int(1, 9000));
        cuts.push(at);
      }
      const results: string[][] = [];
      for (const server of [direct, viaWrapper]) {
        const raw = await peer(server);
        let from = 0;
        for (const to of cuts) {
          raw.conn.write(stream.slice(from, to));
          from = to;
          if (random.next() < 0.1) await sleep(1);
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
