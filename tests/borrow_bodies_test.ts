/**
 * `borrowBodies`: bodies lent to handlers, chunks handed back to the
 * transport for its next read (Deno reads into the same memory again). Every
 * reply must still be byte-exact, whatever the chunking, the backpressure or
 * the async handlers holding bodies.
 */

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { encodeFrame, Router, serve, type Server, type ServerOptions } from "../mod.ts";
import type { Connection } from "../src/transport/types.ts";
import { sleep, until } from "./_async.ts";
import { concat } from "./_bytes.ts";
import { rawPeer } from "./_raw_peer.ts";
import { runSeed, SeededRandom } from "./_seeded_random.ts";

const HOST = "127.0.0.1";
/** Handled after a timer: its body must stay intact until its promise settles. */
const ASYNC_ID = 7;

const servers: Server[] = [];
const peers: Connection[] = [];

after(async () => {
  for (const peer of peers) peer.abort();
  await Promise.all(servers.map((server) => server.close({ drainTimeout: 100 })));
});

/** Echo server: id 7 replies after a timer, everything else at once. */
async function echoServer(options: ServerOptions = {}): Promise<Server> {
  const router = new Router()
    .handle(ASYNC_ID, async (request) => {
      await sleep(1);
      request.reply(request.body);
    })
    .fallback((request) => {
      request.reply(request.body);
    });
  const server = await serve({ host: HOST, port: 0, router, borrowBodies: true, ...options });
  servers.push(server);
  return server;
}

/**
 * Send one peer's stream of random frames (some handled asynchronously) in
 * random pieces, stalling its reads for the first third, and check that the
 * replies are the requests, byte for byte.
 */
async function echoRandomStream(server: Server, random: SeededRandom, label: string): Promise<void> {
  const peer = await rawPeer(server.address.port);
  peers.push(peer.conn);
  peer.conn.pause(); // replies pile up until the peer reads
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 600; i++) {
    const size = random.pick([0, 1, 63, 64, 1000, 1025, 4096, 4100, 9000, 20000]);
    const id = random.int(0, 9) === 0 ? ASYNC_ID : random.int(1, 6);
    frames.push(encodeFrame(id, random.bytes(size)));
  }
  const stream = concat(frames);
  for (let offset = 0; offset < stream.length;) {
    const size = Math.min(random.int(1, 24 * 1024), stream.length - offset);
    peer.conn.write(stream.slice(offset, offset + size));
    offset += size;
    if (random.int(0, 7) === 0) await sleep(0);
    if (offset > stream.length / 3) peer.conn.resume();
  }
  peer.conn.resume();
  await until(() => peer.chunks.reduce((sum, chunk) => sum + chunk.length, 0) >= stream.length, 20000, `${label}: every reply`);
  const received = concat(peer.chunks);
  assert.equal(received.length, stream.length, label);
  // Replies keep request order, so the reply stream is the request stream.
  assert.ok(received.every((byte, i) => byte === stream[i]), `${label}: reply stream differs from the requests`);
}

describe("borrowBodies", () => {
  it("rejects a value that is not a boolean, naming the option", async () => {
    await assert.rejects(
      serve({ host: HOST, port: 0, borrowBodies: "yes" as unknown as boolean }),
      (error: Error) => error instanceof TypeError && /Invalid option "borrowBodies": yes is not a boolean/.test(error.message),
    );
  });

  it("echoes every frame byte-exact through random splits, a stalled reader and async handlers", async () => {
    const seed = runSeed();
    // Small water marks so that flushes wait for drains while chunks keep coming.
    const server = await echoServer({ highWaterMark: 16 * 1024, lowWaterMark: 8 * 1024 });
    await echoRandomStream(server, new SeededRandom(seed), `seed ${seed}`);
  });

  it("keeps several peers' bodies apart while they share the server's read memory (Bun copies chunks into memory connections share)", async () => {
    const seed = runSeed();
    const server = await echoServer({ highWaterMark: 16 * 1024, lowWaterMark: 8 * 1024 });
    await Promise.all([1, 2, 3].map((peer) => echoRandomStream(server, new SeededRandom(seed * 4 + peer), `seed ${seed}, peer ${peer}`)));
  });

  it("leaves bodies intact for a handler that keeps them when the option is off (the default)", async () => {
    const kept: Uint8Array[] = [];
    const router = new Router().fallback((request) => {
      kept.push(request.body);
      request.reply(new Uint8Array(0));
    });
    const server = await serve({ host: HOST, port: 0, router });
    servers.push(server);
    const peer = await rawPeer(server.address.port);
    peers.push(peer.conn);
    const bodies = Array.from({ length: 64 }, (_, i) => new Uint8Array(5000).fill(i));
    for (const body of bodies) peer.conn.write(encodeFrame(1, body));
    await until(() => peer.frames().length === bodies.length, 10000, "every reply");
    assert.equal(kept.length, bodies.length);
    kept.forEach((body, i) => assert.ok(body.length === 5000 && body.every((byte) => byte === i), `kept body ${i} intact`));
  });
});
