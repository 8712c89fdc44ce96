/**
 * Model-based fuzzing of {@link TransportSession} over a {@link FakeConnection}
 * and a {@link FakeClock}: random options, random handlers (sync or async,
 * replying, pushing, throwing), random event sequences (data cut anywhere,
 * drains with full sockets, the peer's FIN, resets, application and shutdown
 * closes, pushes, time, microtasks and macrotasks), with the invariants checked
 * after every step.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { CloseReason } from "../src/close_reason.ts";
import { IncompleteFrameError } from "../src/errors.ts";
import { FrameDecoder } from "../src/frame_decoder.ts";
import { FrameEncoder } from "../src/frame_encoder.ts";
import { type ByteOrder, FrameLayout, type IdBytes, type LengthBytes } from "../src/frame_layout.ts";
import { type Request, resolveSessionOptions, type Session, type SessionOwner, TransportSession } from "../src/session.ts";
import { concat, toHex } from "./_bytes.ts";
import { FakeClock, FakeConnection, systemError } from "./_fake_connection.ts";
import { SeededRandom } from "./_seeded_random.ts";

/** The error reply's id, as the server's bundled application sends it (capped to the layout). */
const ERROR_ID = 65535;
const utf8 = new TextEncoder();

/** One frame the session is expected to send, in the model's queue order. */
interface ModelFrame {
  readonly id: number;
  readonly body: Uint8Array;
  /** `reply` frames carry their request's index and their rank among its replies. */
  readonly kind: "reply" | "push";
  readonly request: number;
  readonly rank: number;
  readonly label: string;
}

/** What the model knows of one dispatched request. */
interface ModelRequest {
  readonly index: number;
  readonly mode: string;
  /** The session holds this request's replies in a slot of its pipeline. */
  hasSlot: boolean;
  /** The handler finished (the session settled the request). */
  done: boolean;
  /** Replies held in the slot until the request is released. */
  held: ModelFrame[];
  /** Replies made so far (accepted by the session). */
  replies: number;
}

/** How a handler behaves for one request. */
interface Plan {
  mode: "sync" | "microtasks" | "ticks" | "macrotask";
  /** Microtask hops or fake milliseconds to wait. */
  wait: number;
  /** Replies made before the first await (async) and in total. */
  repliesBefore: number;
  replies: number;
  push: boolean;
  fail: boolean;
}

class HandlerFailure extends Error {
  constructor(index: number) {
    super(`handler failure for request ${index}`);
    this.name = "HandlerFailure";
  }
}

class Violation extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Violation";
  }
}

/** The frames of the input stream, with the offset at which each one completes. */
interface InputFrame {
  readonly id: number;
  readonly body: Uint8Array;
  readonly end: number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function short(bytes: Uint8Array): string {
  return bytes.length > 24 ? `${toHex(bytes.subarray(0, 24))} ...(${bytes.length})` : toHex(bytes);
}

const microtask = (): Promise<void> => Promise.resolve();
const macrotask = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** One round: a session, its fakes, the model and the checks. */
class Round {
  readonly rng: SeededRandom;
  readonly layout: FrameLayout;
  readonly encoder: FrameEncoder;
  readonly connection = new FakeConnection();
  readonly clock = new FakeClock();
  readonly session: TransportSession;
  readonly options: {
    highWaterMark: number;
    lowWaterMark: number;
    hardLimit: number;
    maxPendingRequests: number;
    lingerTimeout: number;
    idleTimeout: number;
    frameTimeout: number;
    /** Request bodies lent to handlers; a chunk handed back is overwritten, as Deno's adapter reuses it. */
    borrowBodies: boolean;
  };
  readonly log: string[] = [];

  // ---- observations ----
  closingCalls: CloseReason[] = [];
  closedCalls: Array<{ reason: CloseReason; error: Error | undefined }> = [];
  closingErrors: Array<Error | undefined> = [];
  /** The first close reason the session reported (closing or closed). */
  firstReason: CloseReason | undefined;
  violations: string[] = [];

  // ---- the model ----
  /** Every frame the session queued, in queue order; a prefix of it has been written. */
  readonly queue: ModelFrame[] = [];
  /** Queue length when the transport closed: nothing after it is ever written. */
  queueAtClose: number | undefined;
  readonly requests: ModelRequest[] = [];
  /** Every reply the session accepted, in the order made. */
  readonly allReplies: ModelFrame[] = [];
  pipeline: ModelRequest[] = [];
  /** A synchronous request the session settles as soon as its dispatch returns. */
  lastSync: ModelRequest | undefined;
  /** The close reason the call being made must decide, if the session is open. */
  expecting: CloseReason | undefined;
  /** Reasons the current step may decide without a call of ours expecting them. */
  allowed: ReadonlySet<CloseReason> = new Set();

  // ---- input ----
  readonly inputFrames: InputFrame[] = [];
  /** Bytes generated but not yet delivered. */
  pendingInput: Uint8Array = new Uint8Array(0);
  /**
   * Memory chunks are read into, as the Node and Deno adapters do: the next
   * chunk goes to its start while the last chunk read there has been handed
   * back, and to fresh memory otherwise.
   */
  readonly #readMemory = new ArrayBuffer(4096);
  #readMemoryFree = true;
  /** Bytes generated so far (delivered or not). */
  generated = 0;
  fed = 0;
  /** Offset at which the oversized header completes, once one was generated. */
  poisonAt: number | undefined;

  // ---- output ----
  readonly written: Array<{ id: number; body: Uint8Array }> = [];
  readonly outputDecoder: FrameDecoder;
  writesSeen = 0;
  bytesWritten = 0;
  endSeen = false;
  pausedSeen = false;
  gracefulEndChecked = false;
  repliesHeld = 0;
  pushesAccepted = 0;
  pushesRefused = 0;

  constructor(rng: SeededRandom) {
    this.rng = rng;
    const lengthBytes = rng.pick<LengthBytes>([1, 2, 2, 4]);
    const limit = 2 ** (8 * lengthBytes) - 1;
    this.layout = new FrameLayout({
      idBytes: rng.pick<IdBytes>([0, 1, 2, 2, 4]),
      lengthBytes,
      byteOrder: rng.pick<ByteOrder>(["big", "little"]),
      maxBody: rng.int(0, 2) === 0 ? rng.int(4, 40) : Math.min(limit, rng.int(40, 300)),
    });
    this.encoder = new FrameEncoder(this.layout);
    this.outputDecoder = new FrameDecoder(this.layout);
    // Both marks at least 1: a session with either at 0 would never read again.
    const highWaterMark = rng.int(0, 3) === 0 ? rng.int(1, 20) : rng.int(20, 400);
    this.options = {
      highWaterMark,
      lowWaterMark: rng.int(1, highWaterMark),
      hardLimit: highWaterMark + rng.int(0, 400),
      maxPendingRequests: rng.int(1, 6),
      lingerTimeout: rng.int(1, 500),
      idleTimeout: rng.int(0, 2) === 0 ? rng.int(50, 2000) : 0,
      frameTimeout: rng.int(0, 2) === 0 ? rng.int(50, 2000) : 0,
      borrowBodies: rng.int(0, 1) === 1,
    };
    const owner: SessionOwner = {
      dispatch: (request) => this.#dispatch(request),
      handlerError: (error, request) => this.#handlerError(error, request),
      closing: (_session: Session, reason, error) => {
        this.closingCalls.push(reason);
        this.closingErrors.push(error);
        this.#decided(reason, "closing");
      },
      closed: (_session: Session, reason, error) => {
        this.closedCalls.push({ reason, error });
        if (this.closedCalls.length === 1) {
          this.#decided(reason, "closed");
          this.#transportClosed();
        }
      },
    };
    this.session = new TransportSession(
      this.connection,
      this.layout,
      { ...resolveSessionOptions({ ...this.options, clock: this.clock }), borrowBodies: this.options.borrowBodies },
      owner,
    );
    this.session.start();
  }

  get open(): boolean {
    return this.closingCalls.length === 0 && this.closedCalls.length === 0;
  }

  get closed(): boolean {
    return this.closedCalls.length > 0;
  }

  violation(message: string): void {
    const last = this.log.length === 0 ? "start" : `step ${this.log.length - 1}`;
    this.violations.push(`${message} (during ${last})`);
  }

  // ---- model hooks ----

  #decided(reason: CloseReason, via: string): void {
    if (this.firstReason !== undefined) {
      if (via === "closing") this.violation(`closing reported again (${reason}) after ${this.firstReason}`);
      else if (reason !== this.firstReason) this.violation(`closed reported ${reason}, but ${this.firstReason} was decided first`);
      return;
    }
    this.firstReason = reason;
    if (this.expecting !== undefined) {
      if (reason !== this.expecting) this.violation(`decided ${reason} (via ${via}); expected ${this.expecting}`);
    } else if (!this.allowed.has(reason)) {
      this.violation(`decided ${reason} (via ${via}) unexpectedly in this step`);
    }
  }

  #transportClosed(): void {
    this.queueAtClose = this.queue.length;
    this.pipeline = [];
    for (const request of this.requests) request.held = [];
  }

  /** Settle the last synchronous request (the session did right after its dispatch returned). */
  settleSync(current?: ModelRequest): void {
    const request = this.lastSync;
    if (request === undefined || request === current) return;
    this.lastSync = undefined;
    this.#settle(request);
  }

  #settle(request: ModelRequest): void {
    request.done = true;
    if (!request.hasSlot || this.pipeline[0] !== request) return;
    while (this.pipeline.length > 0 && this.pipeline[0]!.done) {
      const head = this.pipeline.shift()!;
      if (!this.closed) this.queue.push(...head.held);
      head.held = [];
    }
  }

  #enqueue(frame: ModelFrame): void {
    if (!this.closed) this.queue.push(frame);
  }

  /** Model of `replyTo` for a request whose handler has not finished. */
  #modelReply(request: ModelRequest, frame: ModelFrame): void {
    if (request.hasSlot) {
      request.held.push(frame);
    } else if (this.pipeline.length === 0) {
      this.#enqueue(frame);
      return;
    } else {
      request.hasSlot = true;
      this.pipeline.push(request);
      request.held.push(frame);
    }
    if (this.pipeline[0] !== request) this.repliesHeld++;
  }

  /** `sent` (default `body`) is what the handler passes, `body` the model's copy of it. */
  reply(request: Request, model: ModelRequest, id: number, body: Uint8Array, label: string, sent = body): void {
    this.settleSync(model);
    const expected = !this.closed;
    const ok = request.reply(sent, id);
    if (ok !== expected) this.violation(`reply ${label} returned ${ok}; expected ${expected}`);
    if (!ok) return;
    const frame: ModelFrame = { id, body, kind: "reply", request: model.index, rank: model.replies++, label };
    this.allReplies.push(frame);
    this.#modelReply(model, frame);
  }

  /** `session.send`, with the model's prediction of its result and of a slow-consumer close. */
  push(id: number, body: Uint8Array, label: string): void {
    this.settleSync();
    const size = this.encoder.frameSize(body);
    const queuedBefore = this.session.queuedBytes;
    let expected = this.open;
    const outerExpecting = this.expecting;
    if (expected && this.unwrittenBytes() + this.connection.backlog + size > this.options.hardLimit) {
      expected = false;
      this.expecting = "slow-consumer";
    }
    const overLimit = this.expecting === "slow-consumer" && outerExpecting !== "slow-consumer";
    let ok: boolean;
    try {
      ok = this.session.send(id, body);
    } finally {
      this.expecting = outerExpecting;
    }
    if (overLimit && this.firstReason !== "slow-consumer") {
      this.violation(`send ${label} found the queue over the hard limit but the session decided ${this.firstReason}, not slow-consumer`);
    }
    if (ok !== expected) {
      this.violation(
        `send ${label} (${size} bytes) returned ${ok}; model expected ${expected} (state ${this.session.state}, ` +
          `model queue ${this.unwrittenBytes()} + backlog ${this.connection.backlog}, hard limit ${this.options.hardLimit}, queuedBytes before ${queuedBefore})`,
      );
    }
    if (ok) {
      this.pushesAccepted++;
      this.#enqueue({ id, body, kind: "push", request: -1, rank: -1, label });
    } else {
      this.pushesRefused++;
    }
  }

  /** Make a call that must decide `reason` when the session is open. */
  expect(reason: CloseReason, call: () => void): void {
    this.settleSync();
    const wasOpen = this.open;
    this.expecting = reason;
    try {
      call();
    } finally {
      this.expecting = undefined;
    }
    if (wasOpen && this.firstReason !== reason) this.violation(`expected the session to decide ${reason}; got ${this.firstReason}`);
  }

  unwrittenBytes(): number {
    this.#observeWrites();
    let bytes = 0;
    const end = this.queueAtClose ?? this.queue.length;
    for (let i = this.written.length; i < end; i++) bytes += this.encoder.frameSize(this.queue[i]!.body);
    return this.closed ? 0 : bytes;
  }

  // ---- the handler ----

  #plan(): Plan {
    const rng = this.rng;
    const mode = rng.pick<Plan["mode"]>(["sync", "sync", "microtasks", "ticks", "macrotask"]);
    const replies = rng.pick([0, 1, 1, 1, 2, 3]);
    return {
      mode,
      wait: mode === "ticks" ? rng.int(0, 300) : rng.int(0, 4),
      repliesBefore: rng.int(0, replies),
      replies,
      push: rng.int(0, 5) === 0,
      fail: rng.int(0, 6) === 0,
    };
  }

  /**
   * The `rank`-th reply to a request: derived from its id and body, so the
   * replies are computable. Every other request's first reply is an echo: its
   * own body (`sent`, the view the session lent) under its own id, which the
   * session may send straight from the received chunk.
   */
  replyFrame(request: Request, rank: number, index: number): { id: number; body: Uint8Array; sent?: Uint8Array } {
    if (rank === 0 && index % 2 === 0) return { id: request.id, body: request.body.slice(), sent: request.body };
    const id = (request.id + rank) % (this.layout.maxId + 1);
    const body = concat([request.body.slice().reverse(), new Uint8Array([rank])]).subarray(0, this.layout.maxBody);
    return { id, body };
  }

  randomPush(label: string): void {
    const id = Math.floor(this.rng.next() * (this.layout.maxId + 1));
    const body = utf8.encode(`push ${label}`).subarray(0, Math.min(this.layout.maxBody, this.rng.int(0, 40)));
    this.push(id, body, label);
  }

  #dispatch(request: Request): void | Promise<void> {
    this.settleSync();
    const index = this.requests.length;
    if (!this.open || this.session.state !== "open") {
      this.violation(`request ${index} dispatched while the session is ${this.session.state}`);
    }
    const input = this.inputFrames[index];
    if (input === undefined || input.id !== request.id || !sameBytes(input.body, request.body)) {
      this.violation(
        `request ${index} is ${request.id}:${short(request.body)}; the input frame is ` +
          (input === undefined ? "none" : `${input.id}:${short(input.body)}`),
      );
    }
    const plan = this.#plan();
    const model: ModelRequest = { index, mode: plan.mode, hasSlot: false, done: false, held: [], replies: 0 };
    this.requests.push(model);
    this.#models.set(request, model);
    const replies = (from: number, to: number): void => {
      // A body stays valid while its handler runs, borrowed or not.
      if (input !== undefined && !sameBytes(input.body, request.body)) {
        this.violation(`request ${index}'s body changed before its handler finished`);
      }
      for (let rank = from; rank < to; rank++) {
        const { id, body, sent } = this.replyFrame(request, rank, index);
        this.reply(request, model, id, body, `r${index}.${rank}`, sent);
      }
    };
    if (plan.mode === "sync") {
      this.lastSync = model;
      replies(0, plan.replies);
      if (plan.push) this.randomPush(`p-in-r${index}`);
      if (plan.fail) throw new HandlerFailure(index);
      return undefined;
    }
    const run = async (): Promise<void> => {
      replies(0, plan.repliesBefore);
      if (plan.mode === "microtasks") {
        for (let i = 0; i < plan.wait; i++) await microtask();
      } else if (plan.mode === "ticks") {
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, plan.wait));
      } else {
        await macrotask();
      }
      replies(plan.repliesBefore, plan.replies);
      if (plan.push) this.randomPush(`p-in-r${index}`);
      if (plan.fail) throw new HandlerFailure(index);
    };
    // The session attaches its reaction to `result` when dispatch returns; the
    // model's is attached right after `result` settles, so it runs next, before
    // anything else can observe the difference.
    let settle!: () => void;
    let fail!: (error: unknown) => void;
    const result = new Promise<void>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    const modelSettled = (): void => {
      this.settleSync(model);
      this.#settle(model);
    };
    run().then(
      () => {
        settle();
        result.then(modelSettled, modelSettled);
      },
      (error: unknown) => {
        fail(error);
        result.then(modelSettled, modelSettled);
      },
    );
    if (!model.hasSlot) {
      model.hasSlot = true;
      this.pipeline.push(model);
    }
    return result;
  }

  #handlerError(error: unknown, request: Request): void {
    const model = this.#models.get(request);
    if (model === undefined) {
      this.violation(`handlerError for a request never dispatched (${request.id})`);
      return;
    }
    this.settleSync(model);
    if (!(error instanceof HandlerFailure)) this.violation(`handlerError got ${String(error)}`);
    // As the server's bundled application does: answer with an error frame.
    const id = Math.min(ERROR_ID, this.layout.maxId);
    const body = utf8.encode(`error ${model.index}`).subarray(0, this.layout.maxBody);
    this.reply(request, model, id, body, `e${model.index}`);
  }

  readonly #models = new WeakMap<Request, ModelRequest>();

  // ---- input generation ----

  /** Generate a few more input frames (or, rarely, an oversized header) when nothing is pending. */
  #generate(): void {
    if (this.pendingInput.length > 0 || this.poisonAt !== undefined) return;
    const rng = this.rng;
    const parts: Uint8Array[] = [];
    const lengthLimit = 2 ** (8 * this.layout.lengthBytes) - 1;
    if (this.layout.maxBody < lengthLimit && rng.int(0, 30) === 0) {
      const header = this.encoder.encode(0, new Uint8Array(0));
      const length = this.layout.maxBody + 1;
      const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
      const at = this.layout.idBytes;
      const little = this.layout.littleEndian;
      if (this.layout.lengthBytes === 1) view.setUint8(at, length);
      else if (this.layout.lengthBytes === 2) view.setUint16(at, length, little);
      else view.setUint32(at, length, little);
      parts.push(header, rng.bytes(rng.int(0, 8)));
      this.poisonAt = this.generated + header.length;
    } else {
      for (let n = rng.int(1, 4); n > 0; n--) {
        const id = Math.floor(rng.next() * (this.layout.maxId + 1));
        const body = rng.bytes(rng.int(0, Math.min(this.layout.maxBody, rng.int(0, 3) === 0 ? 120 : 12)));
        const wire = this.encoder.encode(id, body);
        this.inputFrames.push({ id, body, end: this.generated + wire.length });
        this.generated += wire.length;
        parts.push(wire);
      }
    }
    const bytes = concat(parts);
    if (this.poisonAt !== undefined) this.generated += bytes.length;
    this.pendingInput = concat([this.pendingInput, bytes]);
  }

  /** Bytes after the oversized header: anything (the session discards them). */
  #garbage(): void {
    if (this.pendingInput.length > 0) return;
    this.pendingInput = this.rng.bytes(this.rng.int(1, 16));
    this.generated += this.pendingInput.length;
  }

  /** Input frames complete within the bytes fed so far. */
  completeFramesFed(): number {
    let n = 0;
    while (n < this.inputFrames.length && this.inputFrames[n]!.end <= this.fed) n++;
    return n;
  }

  /** Deliver some of the pending input, cut at a random point (generating more when none is pending). */
  receive(): void {
    this.#generate();
    this.#garbage();
    const cut = this.rng.int(0, 2) === 0 ? this.pendingInput.length : this.rng.int(1, this.pendingInput.length);
    let chunk: Uint8Array;
    if (this.#readMemoryFree && cut <= this.#readMemory.byteLength) {
      chunk = new Uint8Array(this.#readMemory, 0, cut);
      chunk.set(this.pendingInput.subarray(0, cut));
      this.#readMemoryFree = false;
    } else {
      chunk = this.pendingInput.slice(0, cut);
    }
    this.pendingInput = this.pendingInput.slice(cut);
    const before = this.fed;
    this.fed += chunk.length;
    const poisoned = this.poisonAt !== undefined && this.poisonAt > before && this.poisonAt <= this.fed;
    const wasOpen = this.open;
    this.allowed = poisoned ? new Set(["frame-too-large"]) : new Set();
    this.log.push(`receive ${chunk.length} bytes (${before}..${this.fed})${poisoned ? " with the oversized header" : ""}`);
    if (this.connection.receive(chunk) === true) {
      // The session says nothing refers to the chunk: reuse it, as Deno's adapter does.
      chunk.fill(0xee);
      this.log.push("chunk handed back and overwritten");
      if (chunk.buffer === this.#readMemory) this.#readMemoryFree = true;
    }
    if (poisoned && wasOpen && this.firstReason === undefined) this.violation("the oversized header did not close the session");
  }

  // ---- output observation and invariants ----

  /** Decode what was written since last time and match it against the model's queue. */
  #observeWrites(): void {
    const writes = this.connection.writes;
    for (; this.writesSeen < writes.length; this.writesSeen++) {
      const chunk = writes[this.writesSeen]!;
      this.bytesWritten += chunk.length;
      for (const frame of this.outputDecoder.push(chunk)) {
        const index = this.written.length;
        const expected = index < (this.queueAtClose ?? this.queue.length) ? this.queue[index] : undefined;
        if (expected === undefined) {
          this.violation(`written frame ${index} (${frame.id}:${short(frame.body)}) was never queued`);
        } else if (frame.id !== expected.id || !sameBytes(frame.body, expected.body)) {
          this.violation(
            `written frame ${index} is ${frame.id}:${short(frame.body)}; model queue has ${expected.label} ` +
              `${expected.id}:${short(expected.body)}`,
          );
        }
        this.written.push({ id: frame.id, body: frame.body.slice() });
      }
    }
  }

  /** Check every invariant; throws a {@link Violation} naming the first broken one. */
  check(where: string): void {
    this.settleSync();
    const fail = (message: string): never => {
      throw new Violation(`${where}: ${message}`);
    };
    this.#observeWrites();
    if (this.violations.length > 0) fail(this.violations[0]!);
    const { connection, session } = this;

    // Close reported once, with the first reason decided.
    if (this.closingCalls.length > 1) fail(`closing reported ${this.closingCalls.length} times`);
    if (this.closedCalls.length > 1) fail(`closed reported ${this.closedCalls.length} times: ${this.closedCalls.map((c) => c.reason).join(", ")}`);
    if (connection.closeEvents > 0 && this.closedCalls.length !== 1) fail(`transport closed but closed reported ${this.closedCalls.length} times`);
    if (connection.closeEvents === 0 && this.closedCalls.length > 0) fail("closed reported before the transport closed");
    if (session.closeReason !== this.firstReason) fail(`closeReason is ${session.closeReason}; first decided ${this.firstReason}`);
    const state = this.closed ? "closed" : this.open ? "open" : "closing";
    if (session.state !== state) fail(`state is ${session.state}; model says ${state}`);
    if (connection.callsAfterClose !== 0) fail(`${connection.callsAfterClose} transport calls after close`);
    connection.checkBacklog();
    if (connection.rewrittenInBacklog !== 0) fail("a buffer in the transport's backlog was rewritten before it was sent");

    // Output (checked as it is observed): a prefix of the model's queue, in order.
    // Replies leave in request order, each request's in the order made: the
    // replies queued are a prefix of every reply made, sorted that way.
    const inOrder = [...this.allReplies].sort((a, b) => a.request - b.request || a.rank - b.rank);
    let next = 0;
    for (const frame of this.queue) {
      if (frame.kind !== "reply") continue;
      const due = inOrder[next++]!;
      if (frame !== due) fail(`reply ${frame.label} queued before ${due.label} (replies must leave in request order)`);
    }
    if (session.counters.framesOut !== this.written.length) fail(`framesOut ${session.counters.framesOut}; ${this.written.length} frames written`);
    if (session.counters.bytesOut !== this.bytesWritten) fail(`bytesOut ${session.counters.bytesOut}; ${this.bytesWritten} bytes written`);
    if (session.counters.framesIn !== this.requests.length) fail(`framesIn ${session.counters.framesIn}; ${this.requests.length} dispatched`);

    // Queue accounting.
    const ownQueued = session.queuedBytes - connection.backlog;
    const modelQueued = this.unwrittenBytes();
    if (ownQueued !== modelQueued) fail(`queuedBytes ${session.queuedBytes} (backlog ${connection.backlog}); model has ${modelQueued} queued and unwritten`);
    const pipeline = this.closed ? 0 : this.pipeline.length;
    if (session.pendingRequests !== pipeline) fail(`pendingRequests ${session.pendingRequests}; model pipeline ${pipeline}`);

    if (connection.paused) this.pausedSeen = true;
    if (this.open) {
      // Every complete frame fed to an open session was dispatched.
      if (this.requests.length !== this.completeFramesFed()) {
        fail(`${this.requests.length} requests dispatched; ${this.completeFramesFed()} complete frames received`);
      }
      if (session.queuedBytes > this.options.highWaterMark && !connection.paused) {
        fail(`not paused with ${session.queuedBytes} bytes queued over the high-water mark ${this.options.highWaterMark}`);
      }
      if (session.queuedBytes < this.options.lowWaterMark && this.pipeline.length < this.options.maxPendingRequests && connection.paused) {
        fail(`still paused with ${session.queuedBytes} bytes queued (low-water mark ${this.options.lowWaterMark}) and ${this.pipeline.length} pending`);
      }
    }

    // A graceful close sends everything owed before its FIN.
    if (connection.ended && !this.endSeen) {
      this.endSeen = true;
      if (!connection.aborted && !this.closed) {
        this.gracefulEndChecked = true;
        const running = this.requests.filter((r) => !r.done).map((r) => r.index);
        if (running.length > 0) fail(`half-closed while requests ${running.join(", ")} are still running`);
        if (this.written.length !== this.queue.length) {
          fail(`half-closed with ${this.queue.length - this.written.length} queued frames unwritten`);
        }
      }
    }
  }
}

/** What a run covered (to tell a vacuous fuzzer from a useful one). */
export interface SessionFuzzStats {
  rounds: number;
  steps: number;
  /** Steps taken while the session was open. */
  stepsOpen: number;
  requests: number;
  framesWritten: number;
  /** Replies held back behind an earlier request at some point. */
  repliesHeld: number;
  pushesAccepted: number;
  pushesRefused: number;
  /** Rounds in which reading was paused at some check. */
  roundsPaused: number;
  /** Graceful closes whose FIN was checked for completeness. */
  gracefulEnds: number;
  /** First close reason decided, per reason. */
  reasons: Record<string, number>;
  /**
   * A hash (FNV-1a) of what the session showed after every step: state,
   * queued bytes, pending requests, frames written, the transport's ended,
   * aborted and paused flags and pause calls, close reports, first reason and
   * frames received. Equal for the same seed before and after a change that
   * should not change behaviour.
   */
  fingerprint: number;
}

/** A fresh, zeroed {@link SessionFuzzStats}. */
export function sessionFuzzStats(): SessionFuzzStats {
  return {
    rounds: 0,
    steps: 0,
    stepsOpen: 0,
    requests: 0,
    framesWritten: 0,
    repliesHeld: 0,
    pushesAccepted: 0,
    pushesRefused: 0,
    roundsPaused: 0,
    gracefulEnds: 0,
    reasons: {},
    fingerprint: 0x811c9dc5,
  };
}

/** Fold `text` into an FNV-1a hash. */
function fnv1a(hash: number, text: string): number {
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}

/** What a step left observable, for {@link SessionFuzzStats.fingerprint}. */
function observation(round: Round): string {
  const { session, connection } = round;
  return `${session.state} ${session.queuedBytes} ${session.pendingRequests} ${round.written.length} ` +
    `${connection.ended} ${connection.aborted} ${connection.paused} ${connection.pauseCalls} ` +
    `${round.closedCalls.length} ${round.firstReason} ${session.counters.framesIn};`;
}

/** Close reasons an owner may pass to `beginClose` (server shutdown mostly). */
const BEGIN_CLOSE_REASONS: readonly CloseReason[] = [
  "server-shutdown",
  "server-shutdown",
  "server-shutdown",
  "connection-limit",
  "error",
  "closed-by-app",
];

async function step(round: Round, index: number): Promise<void> {
  const { rng, connection, session, clock } = round;
  round.allowed = new Set();
  // Steps 88 and up close the session: keep them rare so that sessions live a while.
  let choice = rng.int(0, 99);
  if (choice >= 88 && rng.int(0, 2) !== 0) choice = rng.int(0, 87);
  if (choice < 32) {
    round.receive();
  } else if (choice < 40) {
    round.log.push("socket full (accepting = false)");
    connection.accepting = false;
  } else if (choice < 48) {
    round.log.push("drain");
    connection.drain();
  } else if (choice < 52) {
    const left = Math.floor(connection.pending / 2);
    round.log.push(`partial drain (backlog ${connection.pending} -> ${left})`);
    connection.partialDrain(left);
  } else if (choice < 64) {
    round.log.push("send");
    round.randomPush(`p${index}`);
  } else if (choice < 74) {
    const n = rng.int(1, 6);
    round.log.push(`${n} microtasks`);
    for (let i = 0; i < n; i++) await microtask();
  } else if (choice < 78) {
    round.log.push("macrotask");
    await macrotask();
  } else if (choice < 88) {
    const ms = rng.pick([1, 10, 50, 100, 200, 1000, 3000]);
    round.log.push(`advance ${ms} ms`);
    const allowed = new Set<CloseReason>();
    if (round.options.idleTimeout > 0) allowed.add("idle-timeout");
    if (round.options.frameTimeout > 0) allowed.add("frame-timeout");
    round.allowed = allowed;
    clock.advance(ms);
  } else if (choice < 91) {
    round.log.push("peer end");
    const midFrame = round.fed > (round.inputFrames[round.completeFramesFed() - 1]?.end ?? 0);
    const wasOpen = round.open;
    round.expect("peer-closed", () => connection.peerEnd());
    if (wasOpen) {
      const error = round.closingErrors[0];
      if (midFrame && !(error instanceof IncompleteFrameError)) {
        round.violation(`peer end mid-frame reported ${String(error)}, not IncompleteFrameError`);
      }
      if (!midFrame && error !== undefined) round.violation(`peer end on a frame boundary reported ${String(error)}`);
    }
  } else if (choice < 94) {
    const kind = rng.int(0, 3);
    const first = rng.pick(["ECONNRESET", "EPIPE"]);
    const second = first === "ECONNRESET" ? "EPIPE" : "ECONNRESET";
    const names = kind === 0 ? [first] : kind === 1 ? [first, second] : kind === 2 ? [first, first] : [first];
    round.log.push(`transport close ${names.join(" + ")}${kind === 3 ? " then data and drain after close" : ""}`);
    round.expect("reset", () => {
      for (const name of names) connection.close(systemError(name));
    });
    if (kind === 3) {
      round.receive();
      connection.handlers!.onDrain();
      connection.peerEnd();
    }
  } else if (choice < 96) {
    round.log.push("session.close()");
    round.expect("closed-by-app", () => session.close());
  } else if (choice < 98) {
    const reason = rng.pick(BEGIN_CLOSE_REASONS);
    const graceful = rng.int(0, 2) !== 0;
    round.log.push(`beginClose(${reason}, ${graceful})`);
    round.expect(reason, () => session.beginClose(reason, graceful));
  } else {
    round.log.push("transport close (no error)");
    round.expect("peer-closed", () => connection.close());
  }
}

/**
 * Run `rounds` rounds of model-based fuzzing of {@link TransportSession}, seeded
 * with `seed`. Each round builds a session with random small water marks, hard
 * limit, pending-request cap and (sometimes) timeouts, and a random handler;
 * fires random steps; checks after every step that:
 *
 * - the owner's `closed` ran at most once, exactly once after the transport
 *   closed, and every reason reported (and `closeReason`) is the first decided,
 *   which is the one the step that decided it calls for;
 * - nothing is written or ended after the transport closed, nothing is
 *   dispatched once closing, and every complete frame fed to an open session
 *   is dispatched, in order;
 * - the frames written are exactly a prefix of the model's queue (replies in
 *   request order, pushes where they were queued), and a graceful close sends
 *   all of it before its FIN;
 * - `queuedBytes` is the model's queued-but-unwritten bytes plus the transport
 *   backlog (the session's own part 0 after close), `pendingRequests` the
 *   model's pipeline, and reading is paused over the high-water mark;
 *
 * then closes the transport and checks that `closed` ran exactly once.
 *
 * @param seed Seed of the run (replays it exactly).
 * @param rounds How many sessions to drive.
 * @param stats When given, what the run covered is added to it.
 * @throws {Error} On the first violation; the message names the seed, the round
 * and the steps of that round.
 */
export async function fuzzSession(seed: number, rounds: number, stats?: SessionFuzzStats): Promise<void> {
  const rng = new SeededRandom(seed);
  for (let r = 0; r < rounds; r++) {
    const round = new Round(rng);
    const steps = rng.int(1, 60);
    try {
      round.check("after start");
      let stepsOpen = 0;
      let afterClose = 0;
      for (let s = 0; s < steps; s++) {
        if (round.open) stepsOpen++;
        // A few steps after the transport closed are enough to see nothing happens.
        if (round.closed && ++afterClose > 3) break;
        await step(round, s);
        round.check(`after step ${s} (${round.log[round.log.length - 1]})`);
        if (stats !== undefined) stats.fingerprint = fnv1a(stats.fingerprint, observation(round));
      }
      // Drive it to closure, then let every handler finish.
      round.log.push("final transport close");
      round.allowed = new Set(["peer-closed"]);
      round.connection.close();
      round.check("after the final close");
      await microtask();
      round.clock.advance(10_000);
      await macrotask();
      await macrotask();
      round.check("after the handlers finished");
      if (stats !== undefined) stats.fingerprint = fnv1a(stats.fingerprint, observation(round));
      if (round.closedCalls.length !== 1) throw new Violation(`closed reported ${round.closedCalls.length} times in the end`);
      if (stats !== undefined) {
        stats.rounds++;
        stats.steps += round.log.length - 1;
        stats.stepsOpen += stepsOpen;
        stats.requests += round.requests.length;
        stats.framesWritten += round.written.length;
        stats.repliesHeld += round.repliesHeld;
        stats.pushesAccepted += round.pushesAccepted;
        stats.pushesRefused += round.pushesRefused;
        if (round.pausedSeen) stats.roundsPaused++;
        if (round.gracefulEndChecked) stats.gracefulEnds++;
        const reason = round.firstReason ?? "none";
        stats.reasons[reason] = (stats.reasons[reason] ?? 0) + 1;
      }
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new Error(
        `Session fuzz failure at seed ${seed} round ${r}: ${message}\n` +
          `  layout ${JSON.stringify({ idBytes: round.layout.idBytes, lengthBytes: round.layout.lengthBytes, byteOrder: round.layout.byteOrder, maxBody: round.layout.maxBody })}\n` +
          `  options ${JSON.stringify(round.options)}\n` +
          `  steps:\n${round.log.map((line, i) => `    ${i}: ${line}`).join("\n")}`,
        { cause: error },
      );
    }
  }
}
