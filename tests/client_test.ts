import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Client, type ClientOptions, connect, encodeFrame, FrameDecoder, RequestTimeoutError } from "../mod.ts";
import type { Transport } from "../src/transport/types.ts";
import { concat } from "./_bytes.ts";
import { FakeClock, FakeConnection } from "./_fake_connection.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** Let queued microtasks (the flush, the close) run. */
async function turn(): Promise<void> {
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

/** A transport whose one connection is the test's fake. */
function fakeTransport(connection: FakeConnection): Transport {
  return {
    runtime: "node",
    listen: () => Promise.reject(new Error("Cannot listen: this fake transport only connects")),
    connect: () => Promise.resolve(connection),
  };
}

interface Harness {
  client: Client;
  connection: FakeConnection;
  clock: FakeClock;
  /** Frames the client wrote, decoded as `id:body`. */
  sent(): string[];
}

async function fakeClient(options: ClientOptions = {}): Promise<Harness> {
  const connection = new FakeConnection();
  const clock = new FakeClock();
  const client = await connect({ ...options, clock, transport: fakeTransport(connection) });
  return {
    client,
    connection,
    clock,
    sent: () => new FrameDecoder().push(connection.written()).map((f) => `${f.id}:${text.decode(f.body)}`),
  };
}

/** Abort the client and wait for its close, so that no timer outlives the test. */
async function dispose(client: Client): Promise<void> {
  client.abort();
  await client.closed;
}

describe("Client with an injected clock", () => {
  it("sends keepalive pings on the clock's interval and swallows the pongs", async () => {
    const seen: number[] = [];
    const h = await fakeClient({ keepAlive: { id: 9, interval: 1000 }, onFrame: (f) => seen.push(f.id) });
    try {
      h.clock.advance(999);
      await turn();
      assert.deepEqual(h.sent(), [], "no ping before the interval");
      for (let round = 1; round <= 10; round++) {
        h.clock.advance(round === 1 ? 1 : 1000);
        await turn();
        assert.equal(h.sent().length, round, `ping ${round} at ${h.clock.now()} ms`);
        h.connection.receive(encodeFrame(9, EMPTY));
      }
      assert.deepEqual(h.sent(), Array.from({ length: 10 }, () => "9:"));
      assert.equal(h.client.isClosed, false, "answered pings keep the connection open");
      assert.deepEqual(seen, [], "pongs never reach onFrame");
    } finally {
      await dispose(h.client);
    }
    assert.equal(h.clock.pendingTimers, 0, "the keepalive timer is cancelled on close");
  });

  it("closes with idle-timeout once nothing has arrived for the keepalive timeout on the clock", async () => {
    const h = await fakeClient({ keepAlive: { id: 9, interval: 1000, timeout: 3000 } });
    try {
      h.clock.advance(2999);
      await turn();
      assert.equal(h.client.isClosed, false);
      assert.deepEqual(h.sent(), ["9:", "9:"]);
      h.clock.advance(1);
      await turn();
      assert.equal(h.client.isClosed, true, "closed at the timeout");
      assert.equal((await h.client.closed).reason, "idle-timeout");
    } finally {
      await dispose(h.client);
    }
  });

  it("times out a request on the clock and keeps later replies matched", async () => {
    const h = await fakeClient();
    try {
      let settled: unknown;
      const outcome = (): unknown => settled;
      h.client.request(1, "slow", { timeout: 500 }).then(
        (frame) => settled = frame,
        (error: unknown) => settled = error,
      );
      h.clock.advance(499);
      await turn();
      assert.equal(outcome(), undefined, "still waiting 1 ms before the timeout");
      h.clock.advance(1);
      await turn();
      const timedOut = outcome();
      assert.ok(timedOut instanceof RequestTimeoutError, `timed out at 500 ms, got ${String(timedOut)}`);
      assert.equal(timedOut.timeout, 500);
      const next = h.client.request(2, "next", { timeout: 500 });
      // The late reply to the timed-out request arrives first and is discarded.
      h.connection.receive(concat([encodeFrame(1, utf8.encode("late")), encodeFrame(2, utf8.encode("next"))]));
      const reply = await next;
      assert.equal(reply.id, 2);
      assert.equal(text.decode(reply.body), "next");
      assert.equal(h.clock.pendingTimers, 0, "an answered request's timer is cancelled");
    } finally {
      await dispose(h.client);
    }
  });
});
