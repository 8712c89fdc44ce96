import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type CloseReason, encodeFrame, FrameDecoder, FrameLayout, type Request } from "../mod.ts";
import {
  type ResolvedSessionOptions,
  resolveSessionOptions,
  type Session,
  type SessionOptions,
  type SessionOwner,
  TransportSession,
} from "../src/session.ts";
import { deferred } from "./_async.ts";
import { concat } from "./_bytes.ts";
import { FakeClock, FakeConnection, systemError } from "./_fake_connection.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

function frame(id: number, body: string): Uint8Array {
  return encodeFrame(id, utf8.encode(body));
}

/** Let queued microtasks (the flush) run. */
async function turn(): Promise<void> {
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

interface Harness {
  connection: FakeConnection;
  session: TransportSession;
  clock: FakeClock;
  closes: Array<{ reason: CloseReason; error?: Error }>;
  errors: unknown[];
  /** Frames the session wrote, decoded. */
  sent(): string[];
}

function harness(
  handler: (request: Request) => void | Promise<void>,
  options: SessionOptions & { borrowBodies?: boolean } = {},
  layout: FrameLayout = FrameLayout.DEFAULT,
  onError?: (error: unknown, request: Request) => void,
): Harness {
  const connection = new FakeConnection();
  const clock = new FakeClock();
  const closes: Array<{ reason: CloseReason; error?: Error }> = [];
  const errors: unknown[] = [];
  const owner: SessionOwner = {
    dispatch: handler,
    handlerError: (error, request) => {
      errors.push(error);
      onError?.(error, request);
    },
    closed: (_session: Session, reason, error) => {
      closes.push(error === undefined ? { reason } : { reason, error });
    },
  };
  const resolved: ResolvedSessionOptions = {
    ...resolveSessionOptions({ ...options, clock }),
    borrowBodies: options.borrowBodies === true,
  };
  const session = new TransportSession(connection, layout, resolved, owner);
  session.start();
  return {
    connection,
    session,
    clock,
    closes,
    errors,
    sent: () => new FrameDecoder(layout).push(connection.written()).map((f) => `${f.id}:${text.decode(f.body)}`),
  };
}

const echo = (request: Request): void => {
  request.reply(request.body);
};

describe("Session", () => {
  it("answers every frame of a chunk and sends the replies in one write", async () => {
    const h = harness(echo);
    h.connection.receive(concat([frame(1, "a"), frame(2, "bb"), frame(3, "")]));
    // The chunk's synchronous replies leave as soon as it is decoded, together.
    assert.equal(h.connection.writes.length, 1, "one write, before the chunk's callback returns");
    await turn();
    assert.equal(h.connection.writes.length, 1);
    assert.deepEqual(h.sent(), ["1:a", "2:bb", "3:"]);
    assert.equal(h.session.counters.framesIn, 3);
    assert.equal(h.session.counters.framesOut, 3);
  });

  it("coalesces pushes made in one turn, outside any chunk, into one write at the end of the turn", async () => {
    const h = harness(echo);
    assert.equal(h.session.send(7, "a"), true);
    assert.equal(h.session.send(8, "b"), true);
    assert.equal(h.connection.writes.length, 0, "nothing is written before the turn ends");
    await turn();
    assert.equal(h.connection.writes.length, 1);
    assert.deepEqual(h.sent(), ["7:a", "8:b"]);
  });

  it("keeps replies in request order when an earlier handler is async", async () => {
    const gate = deferred();
    const h = harness(async (request) => {
      if (request.id === 1) await gate.promise;
      request.reply(`reply ${request.id}`);
    });
    h.connection.receive(concat([frame(1, ""), frame(2, ""), frame(3, "")]));
    await turn();
    assert.deepEqual(h.sent(), [], "replies 2 and 3 wait for request 1");
    assert.equal(h.session.pendingRequests, 3);
    gate.resolve();
    await turn();
    assert.deepEqual(h.sent(), ["1:reply 1", "2:reply 2", "3:reply 3"]);
    assert.equal(h.session.pendingRequests, 0);
  });

  it("sends a synchronous reply at once when nothing earlier is pending", async () => {
    const h = harness((request) => {
      request.reply("first");
      request.reply("second", 9);
    });
    h.connection.receive(frame(4, "x"));
    await turn();
    assert.deepEqual(h.sent(), ["4:first", "9:second"]);
  });

  it("reports a throwing handler and goes on with later frames", async () => {
    const h = harness((request) => {
      if (request.id === 1) throw new Error("boom");
      request.reply("ok");
    }, {}, FrameLayout.DEFAULT, (_error, request) => request.reply("sorry", 65535));
    h.connection.receive(concat([frame(1, ""), frame(2, "")]));
    await turn();
    assert.equal((h.errors[0] as Error).message, "boom");
    assert.deepEqual(h.sent(), ["65535:sorry", "2:ok"]);
    assert.equal(h.session.state, "open");
  });

  it("keeps an async handler's error reply in its place in the order", async () => {
    const gate = deferred();
    const h = harness(async (request) => {
      if (request.id === 1) {
        await gate.promise;
        throw new Error("late failure");
      }
      request.reply("fine");
    }, {}, FrameLayout.DEFAULT, (_error, request) => request.reply("error", 65535));
    h.connection.receive(concat([frame(1, ""), frame(2, "")]));
    gate.resolve();
    await turn();
    assert.deepEqual(h.sent(), ["65535:error", "2:fine"]);
  });

  describe("close", () => {
    it("closes exactly once when a read error and a write error arrive together", async () => {
      const h = harness(echo);
      h.connection.receive(frame(1, "x"));
      h.connection.close(systemError("ECONNRESET"));
      h.connection.close(systemError("EPIPE"));
      h.session.beginClose("error", false);
      h.session.close();
      await turn();
      assert.deepEqual(h.closes.map((c) => c.reason), ["reset"]);
      assert.equal(h.session.state, "closed");
      assert.equal(h.session.closeReason, "reset");
    });

    it("reports one reason when the application closes during shutdown", async () => {
      const h = harness(echo);
      h.session.beginClose("server-shutdown", true);
      h.session.close();
      h.session.beginClose("closed-by-app", false);
      assert.equal(h.session.closeReason, "server-shutdown");
      await turn();
      h.connection.close(systemError("ECONNRESET"));
      assert.deepEqual(h.closes.map((c) => c.reason), ["server-shutdown"]);
    });

    it("does not write, dispatch or report after it closed", async () => {
      let calls = 0;
      const h = harness((request) => {
        calls++;
        request.reply("x");
      });
      h.connection.close();
      h.connection.receive(frame(1, "late"));
      assert.equal(h.session.send(2, "push"), false);
      await turn();
      assert.equal(calls, 0);
      assert.equal(h.connection.writes.length, 0);
      assert.deepEqual(h.closes.map((c) => c.reason), ["peer-closed"]);
    });

    it("flushes the replies to frames before a too-large one, sends nothing for it, then closes", async () => {
      const seen: number[] = [];
      const h = harness((request) => {
        seen.push(request.id);
        request.reply(request.body);
      }, {}, new FrameLayout({ maxBody: 8 }));
      h.connection.receive(concat([encodeFrame(1, utf8.encode("ok")), utf8.encode("\x00\x02\x00\x09"), new Uint8Array(9)]));
      assert.deepEqual(seen, [1]);
      assert.equal(h.session.state, "closing");
      assert.equal(h.session.closeReason, "frame-too-large");
      await turn();
      assert.deepEqual(h.sent(), ["1:ok"]);
      assert.equal(h.connection.ended, true, "half-closed after the flush");
      h.connection.receive(frame(3, "ignored while closing"));
      h.connection.close();
      assert.deepEqual(seen, [1]);
      assert.deepEqual(h.closes.map((c) => c.reason), ["frame-too-large"]);
    });

    it("on the peer's half-close delivers every reply owed, then ends and reports peer-closed", async () => {
      const gate = deferred();
      const h = harness(async (request) => {
        await gate.promise;
        request.reply("done");
      });
      h.connection.receive(frame(1, ""));
      h.connection.peerEnd();
      await turn();
      assert.equal(h.connection.ended, false, "waits for the pending handler");
      gate.resolve();
      await turn();
      assert.deepEqual(h.sent(), ["1:done"]);
      assert.equal(h.connection.ended, true);
      h.connection.close();
      assert.deepEqual(h.closes.map((c) => c.reason), ["peer-closed"]);
    });

    it("aborts when the peer does not close within the linger timeout", async () => {
      const h = harness(echo, { lingerTimeout: 1000 });
      h.session.close();
      assert.equal(h.connection.ended, true);
      h.clock.advance(999);
      assert.equal(h.connection.aborted, false);
      h.clock.advance(1);
      assert.equal(h.connection.aborted, true);
      await turn();
      assert.deepEqual(h.closes.map((c) => c.reason), ["closed-by-app"]);
      assert.equal(h.clock.pendingTimers, 0);
    });

    it("cancels the linger timer when the connection closes in time", () => {
      const h = harness(echo, { lingerTimeout: 1000 });
      h.session.close();
      h.connection.close();
      assert.equal(h.clock.pendingTimers, 0);
    });
  });

  describe("graceful close against a peer that does not read", () => {
    it("aborts when a whole linger timeout passes with the flush stalled", async () => {
      const h = harness(echo, { lingerTimeout: 1000 });
      h.connection.accepting = false;
      h.connection.receive(frame(1, "a"));
      await turn();
      h.connection.receive(frame(2, "b")); // queued behind the pending drain
      h.session.close();
      h.clock.advance(999);
      assert.equal(h.connection.aborted, false);
      h.clock.advance(1);
      assert.equal(h.connection.aborted, true, "stalled for the whole linger timeout");
      await turn();
      assert.deepEqual(h.closes.map((c) => c.reason), ["closed-by-app"]);
    });

    it("keeps waiting while drains show the peer is still reading", async () => {
      const h = harness(echo, { lingerTimeout: 1000 });
      h.connection.accepting = false;
      h.connection.receive(frame(1, "a"));
      await turn();
      h.connection.receive(frame(2, "b"));
      h.session.close();
      h.clock.advance(900);
      h.connection.pending = 1; // the OS took some: a drain, but still full
      h.connection.accepting = false;
      h.connection.handlers!.onDrain();
      h.clock.advance(900);
      assert.equal(h.connection.aborted, false, "progress was made within the last linger timeout");
      h.connection.drain();
      await turn();
      assert.equal(h.connection.ended, true, "everything written, then FIN");
      assert.deepEqual(h.sent(), ["1:a", "2:b"]);
    });
  });

  it("does not count frame time while it stopped reading for backpressure", async () => {
    const h = harness(echo, { frameTimeout: 500, highWaterMark: 10, lowWaterMark: 5, hardLimit: 1000 });
    h.connection.accepting = false;
    const partial = frame(2, "second");
    h.connection.receive(concat([frame(1, "x".repeat(20)), partial.subarray(0, 3)]));
    await turn();
    assert.equal(h.connection.paused, true, "over the high-water mark");
    h.clock.advance(2000);
    assert.equal(h.session.state, "open", "no frame-timeout while we do not read");
    h.connection.drain();
    h.clock.advance(499);
    assert.equal(h.session.state, "open");
    h.clock.advance(1);
    assert.equal(h.session.closeReason, "frame-timeout", "the clock runs again once reading resumes");
  });

  describe("backpressure", () => {
    it("stops reading above the high-water mark and resumes only below the low one", async () => {
      const h = harness(echo, { highWaterMark: 100, lowWaterMark: 40 });
      h.connection.accepting = false;
      h.connection.receive(frame(1, "x".repeat(150)));
      await turn();
      assert.equal(h.connection.paused, true, "paused over the high mark");
      assert.equal(h.session.queuedBytes, 154);
      h.connection.pending = 60; // the OS took some: still above the low mark
      h.connection.handlers!.onDrain();
      assert.equal(h.connection.paused, true, "hysteresis: not below the low mark yet");
      h.connection.drain();
      assert.equal(h.connection.paused, false);
      assert.equal(h.session.queuedBytes, 0);
    });

    it("waits for drain before the next write, then sends everything queued in one write", async () => {
      const h = harness(echo);
      h.connection.accepting = false;
      h.connection.receive(frame(1, "a"));
      await turn();
      h.connection.receive(frame(2, "b"));
      h.connection.receive(frame(3, "c"));
      await turn();
      assert.equal(h.connection.writes.length, 1, "one flush at a time");
      h.connection.drain();
      assert.equal(h.connection.writes.length, 2);
      assert.deepEqual(h.sent(), ["1:a", "2:b", "3:c"]);
    });

    it("closes with slow-consumer when a push finds the queue over the hard limit", async () => {
      const h = harness(echo, { highWaterMark: 100, lowWaterMark: 50, hardLimit: 200 });
      h.connection.accepting = false;
      assert.equal(h.session.send(5, "x".repeat(150)), true);
      await turn();
      assert.equal(h.session.send(5, "y".repeat(60)), false);
      assert.equal(h.session.closeReason, "slow-consumer");
      assert.equal(h.connection.aborted, true);
      await turn();
      assert.deepEqual(h.closes.map((c) => c.reason), ["slow-consumer"]);
    });

    it("does not apply the hard limit to replies", async () => {
      const h = harness(echo, { highWaterMark: 100, lowWaterMark: 50, hardLimit: 200 });
      h.connection.accepting = false;
      h.connection.receive(concat([frame(1, "x".repeat(150)), frame(2, "y".repeat(150))]));
      await turn();
      assert.equal(h.session.state, "open");
      assert.equal(h.connection.paused, true);
    });

    it("stops reading while too many async handlers are pending", async () => {
      const gate = deferred();
      const h = harness(async (request) => {
        await gate.promise;
        request.reply("");
      }, { maxPendingRequests: 4 });
      h.connection.receive(concat([frame(1, ""), frame(2, ""), frame(3, ""), frame(4, "")]));
      assert.equal(h.connection.paused, true);
      gate.resolve();
      await turn();
      assert.equal(h.connection.paused, false);
      assert.deepEqual(h.sent(), ["1:", "2:", "3:", "4:"]);
    });
  });

  describe("timeouts", () => {
    it("closes with idle-timeout when no byte moves either way for the idle timeout", async () => {
      const h = harness(echo, { idleTimeout: 1000, frameTimeout: 0 });
      h.clock.advance(600);
      h.connection.receive(frame(1, "keeps it alive"));
      await turn();
      h.clock.advance(900);
      assert.equal(h.session.state, "open", "activity 900 ms ago is not idle yet");
      h.clock.advance(100);
      assert.equal(h.session.closeReason, "idle-timeout");
      assert.equal(h.connection.ended, true, "closed gracefully");
    });

    it("never closes an idle session when the idle timeout is 0", () => {
      const h = harness(echo, { idleTimeout: 0 });
      h.clock.advance(10_000_000);
      assert.equal(h.session.state, "open");
      assert.equal(h.clock.pendingTimers, 0);
    });

    it("closes with frame-timeout when a started frame does not complete in time", () => {
      const h = harness(echo, { frameTimeout: 500 });
      const wire = frame(1, "slow drip");
      h.connection.receive(wire.subarray(0, 3));
      h.clock.advance(300);
      h.connection.receive(wire.subarray(3, 6)); // still the same frame
      h.clock.advance(199);
      assert.equal(h.session.state, "open");
      h.clock.advance(1);
      assert.equal(h.session.closeReason, "frame-timeout");
    });

    it("times each frame from its own start", async () => {
      const h = harness(echo, { frameTimeout: 500 });
      const a = frame(1, "first");
      const b = frame(2, "second");
      h.connection.receive(a.subarray(0, 2));
      h.clock.advance(400);
      h.connection.receive(concat([a.subarray(2), b.subarray(0, 2)])); // completes a, starts b
      h.clock.advance(400);
      assert.equal(h.session.state, "open", "b started 400 ms ago");
      h.connection.receive(b.subarray(2));
      h.clock.advance(1000);
      assert.equal(h.session.state, "open", "no frame pending");
      await turn();
      assert.deepEqual(h.sent(), ["1:first", "2:second"]);
    });
  });

  it("rejects a reply body over maxBody with FrameTooLargeError", () => {
    const h = harness((request) => {
      request.reply(new Uint8Array(9));
    }, {}, new FrameLayout({ maxBody: 8 }));
    h.connection.receive(frame(1, ""));
    assert.equal((h.errors[0] as Error).name, "FrameTooLargeError");
  });

  it("checks its options and names the bad one", () => {
    assert.throws(() => resolveSessionOptions({ highWaterMark: -1 }), /Invalid option "highWaterMark"/);
    assert.throws(() => resolveSessionOptions({ highWaterMark: 10, lowWaterMark: 20 }), /Invalid option "lowWaterMark": 20 exceeds highWaterMark 10/);
    assert.throws(() => resolveSessionOptions({ highWaterMark: 100, hardLimit: 50 }), /Invalid option "hardLimit"/);
  });

  it("rejects 0 for the options that count bytes or requests, naming the option and the value", () => {
    // 0 would stop reading for good: a high-water mark of 0 is passed by any
    // byte, nothing is ever below a low-water mark of 0, and every session has
    // at least 0 requests pending.
    const cases: Array<[keyof SessionOptions, unknown, string]> = [
      ["highWaterMark", 0, "0 is not a positive integer"],
      ["lowWaterMark", 0, "0 is not a positive integer"],
      ["hardLimit", 0, "0 is not a positive integer"],
      ["maxPendingRequests", 0, "0 is not a positive integer"],
      ["highWaterMark", 1.5, "1.5 is not a positive integer"],
      ["lowWaterMark", "64", '"64" is not a positive integer'],
      ["maxPendingRequests", -1, "-1 is not a positive integer"],
    ];
    for (const [name, value, problem] of cases) {
      assert.throws(
        () => resolveSessionOptions({ [name]: value } as SessionOptions),
        (error: Error) => {
          assert.ok(error instanceof RangeError, `${name}: ${String(value)}`);
          assert.equal(error.message, `Invalid option "${name}": ${problem}`);
          return true;
        },
      );
    }
  });

  it("takes 0 for the timeouts, where it means no timer, and rejects what is not a whole number of milliseconds", () => {
    const resolved = resolveSessionOptions({ idleTimeout: 0, frameTimeout: 0, lingerTimeout: 0 });
    assert.deepEqual([resolved.idleTimeout, resolved.frameTimeout, resolved.lingerTimeout], [0, 0, 0]);
    for (const name of ["idleTimeout", "frameTimeout", "lingerTimeout"] as const) {
      for (const [value, shown] of [[-1, "-1"], [0.5, "0.5"], [Number.NaN, "NaN"]] as const) {
        assert.throws(
          () => resolveSessionOptions({ [name]: value }),
          (error: Error) => {
            assert.ok(error instanceof RangeError);
            assert.equal(error.message, `Invalid option "${name}": ${shown} is not a non-negative integer`);
            return true;
          },
        );
      }
    }
  });

  it("resumes reading once the queue is empty with the smallest low-water mark, 1", async () => {
    const h = harness(echo, { highWaterMark: 100, lowWaterMark: 1 });
    h.connection.accepting = false;
    h.connection.receive(frame(1, "x".repeat(150)));
    await turn();
    assert.equal(h.connection.paused, true, "paused over the high mark");
    h.connection.drain();
    assert.equal(h.session.queuedBytes, 0);
    assert.equal(h.connection.paused, false, "reading again with nothing unsent");
  });

  describe("memory reuse", () => {
    it("with borrowBodies, hands a chunk back only once its frames are handled and their replies written", async () => {
      const copy = (request: Request): void => {
        request.reply(request.body.slice());
      };
      const h = harness(copy, { borrowBodies: true });
      h.connection.holdsWrites = true;
      assert.equal(h.connection.receive(frame(1, "a")), true, "replied, reply copied out: nothing refers to the chunk");
      // The write is still in flight: this chunk's reply waits for the drain and refers to the chunk.
      assert.equal(h.connection.receive(frame(2, "b")), false, "a queued reply still refers to it");
      h.connection.drain(); // sends "1:a"; the session then writes "2:b"
      h.connection.drain();
      assert.deepEqual(h.sent(), ["1:a", "2:b"]);

      const slow = harness(async (request) => {
        await turn();
        request.reply(request.body);
      }, { borrowBodies: true });
      assert.equal(slow.connection.receive(frame(3, "c")), false, "an async handler still holds its body");
      await turn();
      await turn();
      assert.deepEqual(slow.sent(), ["3:c"]);
    });

    it("with borrowBodies, copies even echoed replies out of the chunk, so the chunk is free when onData returns", () => {
      const h = harness(echo, { borrowBodies: true });
      h.connection.holdsWrites = true;
      h.connection.keepGiven = true;
      const chunk = concat([frame(1, "a"), frame(2, "bb"), frame(3, "")]);
      assert.equal(h.connection.receive(chunk), true, "nothing refers to the chunk, though the write is in flight");
      assert.equal(h.connection.given.length, 1, "one write for the chunk's replies");
      assert.notEqual(h.connection.given[0]!.buffer, chunk.buffer, "the replies were copied, not sent from the chunk");
      chunk.fill(0xee); // the adapter reads into it again
      h.connection.drain();
      assert.deepEqual(h.sent(), ["1:a", "2:bb", "3:"]);
    });

    it("copies replies whose bodies are views of the chunk, whatever their id, length or place", () => {
      let earlier: Uint8Array | undefined;
      let first6: Uint8Array | undefined;
      const h = harness((request) => {
        if (request.id === 1) request.reply(request.body, 9); // another id
        else if (request.id === 2) request.reply(request.body.subarray(0, 2)); // another length
        else if (request.id === 3) request.reply(request.body.subarray(1)); // not where the frame's body is
        else if (request.id === 4) request.reply(request.body);
        else if (request.id === 6) {
          // Both frames 6:2: the second replies with the first's body (same id and length as its own).
          request.reply(first6 ?? request.body);
          first6 = request.body;
        } else {
          request.reply(earlier!); // the frame before's body, then an echo: not one stretch of the chunk
          request.reply(request.body);
        }
        earlier = request.body;
      }, { borrowBodies: true });
      h.connection.holdsWrites = true;
      const chunks = [frame(1, "one"), frame(2, "two"), frame(3, "six"), concat([frame(4, "four"), frame(5, "five")]),
        concat([frame(6, "ab"), frame(6, "cd")]),
      ];
      for (const chunk of chunks) {
        assert.equal(h.connection.receive(chunk), true, "copied out: nothing refers to the chunk");
        chunk.fill(0xee);
        h.connection.drain();
      }
      assert.deepEqual(h.sent(), ["9:one", "2:tw", "3:ix", "4:four", "5:four", "5:five", "6:ab", "6:ab"]);
    });

    it("never sends from the chunk without borrowBodies", () => {
      const h = harness(echo);
      h.connection.holdsWrites = true;
      const chunk = concat([frame(1, "a"), frame(2, "b")]);
      h.connection.receive(chunk);
      chunk.fill(0xee); // the application's to change: its replies were copied
      h.connection.drain();
      assert.deepEqual(h.sent(), ["1:a", "2:b"]);
    });

    it("never hands a chunk back without borrowBodies, except while discarding input when closing", () => {
      const h = harness(echo);
      assert.equal(h.connection.receive(frame(1, "a")), false);
      h.session.beginClose("closed-by-app", true);
      assert.equal(h.connection.receive(frame(2, "b")), true, "discarded input is referred to by nothing");
    });

    it("does not rewrite a large flush another session's transport still holds", () => {
      const a = harness(echo);
      const b = harness(echo);
      a.connection.holdsWrites = true;
      b.connection.holdsWrites = true;
      const body = (fill: number) => new Uint8Array(3000).fill(fill);
      a.connection.receive(concat([encodeFrame(1, body(1)), encodeFrame(1, body(1))]));
      b.connection.receive(concat([encodeFrame(2, body(2)), encodeFrame(2, body(2))]));
      a.connection.drain();
      b.connection.drain();
      // Once drained, a's buffer is free again: its next flush may reuse it.
      a.connection.receive(concat([encodeFrame(3, body(3)), encodeFrame(3, body(3))]));
      a.connection.drain();
      const bodies = (h: Harness) => new FrameDecoder().push(h.connection.written()).map((f) => `${f.id}:${f.body.every((x) => x === f.id)}`);
      assert.deepEqual(bodies(a), ["1:true", "1:true", "3:true", "3:true"]);
      assert.deepEqual(bodies(b), ["2:true", "2:true"]);
    });
  });
});
