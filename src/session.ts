/**
 * A session: one connection's decoder, ordered send queue and lifecycle.
 *
 * @module
 */

import type { CloseReason } from "./close_reason.ts";
import { type Clock, systemClock, type TimerHandle } from "./clock.ts";
import { FrameTooLargeError } from "./errors.ts";
import { type FrameDecoder, recyclingDecoder } from "./frame_decoder.ts";
import type { TopicRegistry } from "./topics.ts";
import { writeField } from "./_header_fields.ts";
import { givePooled, takePooled } from "./_buffer_pool.ts";
import { ByteSlab } from "./_byte_slab.ts";
import { FrameEncoder } from "./frame_encoder.ts";
import type { FrameLayout } from "./frame_layout.ts";
import type { Connection, ConnectionHandlers, SocketAddress } from "./transport/types.ts";
import { decodeUtf8, encodeUtf8 } from "./_utf8.ts";
import { DEFAULT_FRAME_TIMEOUT, DEFAULT_HIGH_WATER_MARK, DEFAULT_LINGER_TIMEOUT, defaultHardLimit, defaultLowWaterMark } from "./_defaults.ts";

/** Flow-control and lifetime options of a session. */
export interface SessionOptions {
  /**
   * When a session's unsent bytes pass this mark, it stops reading from its
   * peer until they fall below `lowWaterMark` (TCP then slows the peer). At
   * least 1.
   * @default {65536}
   */
  highWaterMark?: number;
  /**
   * Unsent bytes below which a paused session reads again: at least 1 (then
   * it reads again only once every byte is sent), at most `highWaterMark`.
   * @default {32768}
   */
  lowWaterMark?: number;
  /**
   * A push (a send not caused by the peer's own request) to a session whose
   * unsent bytes would pass this limit closes the session with `slow-consumer`.
   * Replies to requests are governed by the water marks alone.
   * @default {1048576}
   */
  hardLimit?: number;
  /**
   * Requests whose async handlers are still running, past which the session
   * stops reading from its peer until some finish. At least 1.
   * @default {1024}
   */
  maxPendingRequests?: number;
  /**
   * After a graceful close has sent everything and half-closed, how long to
   * wait for the peer to close its side before the connection is aborted, in
   * milliseconds. Reading the peer's remaining bytes until then avoids the reset
   * that closing with unread input causes, which could destroy replies in flight.
   * The same timeout aborts a graceful close whose flush makes no progress
   * (a peer that does not read). 0 does not wait: a graceful close aborts as
   * soon as it has half-closed, or when its flush stalls.
   * @default {2000}
   */
  lingerTimeout?: number;
  /**
   * Close a session with `idle-timeout` when no byte has moved in either
   * direction for this many milliseconds; 0 never does.
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Close a session with `frame-timeout` when a frame it started receiving is
   * not complete within this many milliseconds (slow-drip peers); 0 never does.
   * @default {30000} on a server, 0 on a client
   */
  frameTimeout?: number;
  /** Time source for the session's timers (tests inject a fake one). */
  clock?: Clock;
}

/** Lifecycle state of a session: it only ever moves forward. */
export type SessionState = "open" | "closing" | "closed";

/**
 * One peer's connection as the application sees it.
 *
 * @example
 * ```ts
 * import type { Session } from "@tlvkit/tlvkit";
 * function greet(session: Session): void {
 *   session.send(7, "welcome");
 * }
 * ```
 */
export interface Session {
  /**
   * Unique among the sessions of one process, and of a whole cluster: above
   * 2^32 it carries the number of the node that holds the session (0 for a
   * server alone), so `server.push` on any node finds it.
   */
  readonly id: number;
  /** The peer's address. */
  readonly remote: SocketAddress;
  /** `open`, then `closing` (flushing), then `closed`. */
  readonly state: SessionState;
  /** Why the session closed (or is closing); `undefined` while open. */
  readonly closeReason: CloseReason | undefined;
  /** Bytes queued or written but not yet taken by the operating system. */
  readonly queuedBytes: number;
  /** Frames and bytes that crossed this session, each way. */
  readonly counters: SessionCounters;
  /** Free slot for the application's own per-session data. */
  data: unknown;
  /**
   * Push a frame to the peer. Frames queued in the same turn of the event loop
   * leave in one write, in the order they were queued. The body is copied when
   * the queue flushes, at the end of the current turn: do not change it before.
   *
   * @param id Message id.
   * @param body Body bytes, or text sent as UTF-8.
   * @returns `true` when queued; `false` when the session is no longer open, or
   * when this push found its queue over the hard limit and closed it with
   * `slow-consumer`.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @throws {RangeError} When the id does not fit the layout.
   */
  send(id: number, body: Uint8Array | string): boolean;
  /**
   * Close gracefully with reason `closed-by-app`: replies to requests already
   * received are delivered first. Later calls do nothing.
   */
  close(): void;
  /**
   * Subscribe to `topic`: `server.publish(topic, ...)` on any node of the
   * cluster then reaches this session. A closed session leaves its topics.
   *
   * @returns `true` when it was not subscribed yet (`false` also once closed).
   * @throws {RangeError} When the session holds `maxTopicsPerSession` topics
   *   already, or the name is longer than `maxTopicLength` bytes.
   * @throws {TypeError} When `topic` is not a non-empty string.
   * @throws {Error} On a client's session: topics are a server's.
   */
  subscribe(topic: string): boolean;
  /**
   * Unsubscribe from `topic`.
   *
   * @returns `true` when the session was subscribed to it.
   */
  unsubscribe(topic: string): boolean;
  /** The topics the session is subscribed to (a live view, for reading). */
  readonly topics: ReadonlySet<string>;
}

/** Traffic counters of a session. */
export interface SessionCounters {
  /** Frames received. */
  framesIn: number;
  /** Frames sent. */
  framesOut: number;
  /** Bytes received. */
  bytesIn: number;
  /** Bytes sent (handed to the transport). */
  bytesOut: number;
}

/**
 * One received frame, as a handler sees it, with the means to answer it.
 *
 * @example
 * ```ts
 * import type { Request } from "@tlvkit/tlvkit";
 * function echo(request: Request): void {
 *   request.reply(request.body);
 * }
 * ```
 */
export interface Request {
  /** The frame's message id. */
  readonly id: number;
  /**
   * The frame's body. It stays valid as long as you reference it, unless the
   * server runs with `borrowBodies`: then only until the handler returns (or
   * its promise settles); keep a copy (`body.slice()`) to use it later.
   */
  readonly body: Uint8Array;
  /** The session the frame arrived on. */
  readonly session: Session;
  /**
   * Queue a reply. Replies leave in request order: a reply to a later request
   * waits until every earlier request's handler has finished.
   *
   * @param body Body bytes, or text sent as UTF-8.
   * @param id Message id of the reply; defaults to the request's id.
   * @returns `false` when the session has closed and the reply cannot be sent.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   */
  reply(body: Uint8Array | string, id?: number): boolean;
  /**
   * The body decoded as UTF-8.
   * @throws {TypeError} When the body is not valid UTF-8.
   */
  text(): string;
}

/**
 * Handles one request. May be async: replies on one session still leave in
 * request order.
 */
export type Handler = (request: Request) => void | Promise<void>;

/** What a session reports to the server or client that owns it. */
export interface SessionOwner {
  /** A frame arrived. Returning a promise keeps later replies waiting for it. */
  dispatch(request: Request): void | Promise<void>;
  /** A handler threw or rejected. Replies made here keep their place in order. */
  handlerError(error: unknown, request: Request): void;
  /** The session started closing (for logs). */
  closing?(session: Session, reason: CloseReason, error?: Error): void;
  /** The session closed: reported exactly once. */
  closed(session: Session, reason: CloseReason, error?: Error): void;
  /** Unsent bytes fell below the low-water mark after passing the high one. */
  writable?(session: Session): void;
  /** Where sessions subscribe to topics (a server's; a client has none). */
  readonly topics?: TopicRegistry;
}

/** How a session applies flow control. */
export interface SessionRole {
  /**
   * Stop reading while unsent bytes are over the high-water mark (a server
   * slows a peer that does not read its replies). A client must not: its peer
   * could be waiting for it to read.
   */
  readonly pauseReadingOnBackpressure: boolean;
}

/** The server side of a connection. */
export const SERVER_ROLE: SessionRole = { pauseReadingOnBackpressure: true };
/** The client side of a connection. */
export const CLIENT_ROLE: SessionRole = { pauseReadingOnBackpressure: false };

/**
 * Where a session is in its life. Only {@link TransportSession}'s `#enter`
 * changes it, and only along {@link NEXT}:
 *
 * ```text
 * open ─ beginClose (graceful) ─▶ draining ──── replies owed sent, FIN ───▶ lingering ──┐
 *  │ └── halfClose ────────────▶ halfClosing ── replies owed sent, FIN ───▶ halfClosed ─┤
 *  └────────────────── the transport closed (from any state) ──────────────────────────┴─▶ closed
 * ```
 *
 * - `open`: reading, dispatching and sending.
 * - `draining`: closing; the replies owed are still sent, input is discarded.
 * - `lingering`: FIN sent; input is discarded until the peer closes or the
 *   linger timeout passes.
 * - `halfClosing`, `halfClosed`: the same two steps of a client's
 *   `halfClose`, but the peer's frames are still dispatched (it waits for its
 *   replies).
 * - `closed`: the transport closed; nothing happens any more.
 *
 * An abort (a non-graceful close, the linger or the stall timer) is asked of
 * the transport, whose `onClose` then moves the session to `closed`.
 */
type Lifecycle = "open" | "draining" | "lingering" | "halfClosing" | "halfClosed" | "closed";

/** The transitions allowed out of each state (see {@link Lifecycle}). */
const NEXT: Readonly<Record<Lifecycle, readonly Lifecycle[]>> = {
  open: ["draining", "halfClosing", "closed"],
  draining: ["lingering", "closed"],
  halfClosing: ["halfClosed", "closed"],
  lingering: ["closed"],
  halfClosed: ["closed"],
  closed: [],
};

let nextSessionId = 1;

/** The sessions of one layout share its encoder: it keeps no state between calls. */
const encoders = new WeakMap<FrameLayout, FrameEncoder>();

function encoderFor(layout: FrameLayout): FrameEncoder {
  let encoder = encoders.get(layout);
  if (encoder === undefined) encoders.set(layout, encoder = new FrameEncoder(layout));
  return encoder;
}

/**
 * Small flushes are carved from shared 64 KiB slabs. A region the transport
 * kept (a backlog) is never rewritten, so it may hold it as long as it needs;
 * a region the OS took whole during `write` is reclaimed, so on Node and Bun
 * every small flush in steady state reuses the same bytes. (Larger flushes,
 * and the odd one while a pooled buffer is still being written, get their own
 * region or buffer.)
 */
const outputSlab = new ByteSlab(64 * 1024, 32 * 1024);

/**
 * Flushes larger than this go into a pooled buffer (`_buffer_pool.ts`), given
 * back as soon as the transport's backlog is 0 again, even if that is only at
 * the next drain (Deno's writes are all asynchronous).
 */
const SLAB_FLUSH_MAX = 4096;

/** The topics of a session that has none. */
const NO_TOPICS: ReadonlySet<string> = new Set();

/** Fills released send-queue slots. */
const EMPTY = new Uint8Array(0);

/** The pipeline of a session whose handlers have all finished at once so far. */
const NO_SLOTS: ReplySlot[] = Object.freeze([]) as unknown as ReplySlot[];

/** Sessions whose flush waits for the next microtask ({@link TransportSession}'s `#flushDue`), and a spare list. */
let flushDue: TransportSession[] = [];
let spareFlushDue: TransportSession[] = [];

/** Send-queue arrays longer than this are replaced after a flush instead of kept. */
const KEPT_QUEUE_LENGTH = 1024;

/** Replies of one request, held back until every earlier request is done. */
class ReplySlot {
  ids: number[] = [];
  bodies: Uint8Array[] = [];
  done = false;
}

class SessionRequest implements Request {
  readonly id: number;
  readonly body: Uint8Array;
  readonly session: TransportSession;
  slot: ReplySlot | undefined = undefined;
  done = false;

  constructor(session: TransportSession, id: number, body: Uint8Array) {
    this.session = session;
    this.id = id;
    this.body = body;
  }

  reply(body: Uint8Array | string, id: number = this.id): boolean {
    return this.session.replyTo(this, id, typeof body === "string" ? encodeUtf8(body) : body);
  }

  text(): string {
    return decodeUtf8(this.body);
  }
}

function shown(value: unknown): string {
  return typeof value === "string" ? `"${value}"` : String(value);
}

/** A count of bytes or requests: 0 would stop reading for good. */
function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Invalid option "${name}": ${shown(value)} is not a positive integer`);
  }
  return value;
}

/** A timeout in milliseconds, where 0 has a meaning of its own (see each option). */
function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`Invalid option "${name}": ${shown(value)} is not a non-negative integer`);
  }
  return value;
}

/** Session options with defaults applied and checked. */
export interface ResolvedSessionOptions {
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly hardLimit: number;
  readonly maxPendingRequests: number;
  readonly lingerTimeout: number;
  readonly idleTimeout: number;
  readonly frameTimeout: number;
  readonly clock: Clock;
  /**
   * Request bodies are valid only while their handlers run (a server's
   * `borrowBodies`), so a chunk whose frames are all handled and flushed is
   * handed back to the transport for its next read.
   */
  readonly borrowBodies: boolean;
}

/**
 * Apply defaults to session options and check them.
 *
 * @throws {RangeError} Naming the bad option.
 */
export function resolveSessionOptions(options: SessionOptions): ResolvedSessionOptions {
  const highWaterMark = positiveInteger("highWaterMark", options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK);
  const lowWaterMark = positiveInteger("lowWaterMark", options.lowWaterMark ?? defaultLowWaterMark(highWaterMark));
  const hardLimit = positiveInteger("hardLimit", options.hardLimit ?? defaultHardLimit(highWaterMark));
  const maxPendingRequests = positiveInteger("maxPendingRequests", options.maxPendingRequests ?? 1024);
  const lingerTimeout = nonNegativeInteger("lingerTimeout", options.lingerTimeout ?? DEFAULT_LINGER_TIMEOUT);
  const idleTimeout = nonNegativeInteger("idleTimeout", options.idleTimeout ?? 0);
  const frameTimeout = nonNegativeInteger("frameTimeout", options.frameTimeout ?? DEFAULT_FRAME_TIMEOUT);
  if (lowWaterMark > highWaterMark) {
    throw new RangeError(`Invalid option "lowWaterMark": ${lowWaterMark} exceeds highWaterMark ${highWaterMark}`);
  }
  if (hardLimit < highWaterMark) {
    throw new RangeError(`Invalid option "hardLimit": ${hardLimit} is below highWaterMark ${highWaterMark}`);
  }
  return {
    highWaterMark,
    lowWaterMark,
    hardLimit,
    maxPendingRequests,
    lingerTimeout,
    idleTimeout,
    frameTimeout,
    clock: options.clock ?? systemClock,
    borrowBodies: false,
  };
}

function closeReasonOf(error: (Error & { code?: string }) | undefined): CloseReason {
  if (error === undefined) return "peer-closed";
  return error.code === "ECONNRESET" || error.code === "EPIPE" || error.code === "ECONNABORTED" ? "reset" : "error";
}

/**
 * The session implementation over a transport {@link Connection}: decoder,
 * ordered send queue, backpressure, and a state machine ({@link Lifecycle}:
 * open, two closing steps, closed) that every path (read error, write error,
 * timeout, shutdown, application) goes through once.
 */
export class TransportSession implements Session {
  readonly id: number;
  readonly remote: SocketAddress;
  readonly counters: SessionCounters = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
  data: unknown = undefined;

  readonly #connection: Connection;
  readonly #owner: SessionOwner;
  readonly #options: ResolvedSessionOptions;
  readonly #role: SessionRole;
  readonly #decoder: FrameDecoder;
  readonly #encoder: FrameEncoder;
  readonly #headerSize: number;
  readonly #idBytes: number;
  readonly #lengthBytes: number;
  readonly #littleEndian: boolean;

  #state: Lifecycle = "open";
  #reason: CloseReason | undefined;
  #closeError: Error | undefined;

  /**
   * Frames queued and not yet flushed, as parallel arrays: ids and bodies of
   * the first `#queued` entries. The arrays are kept and overwritten, not
   * replaced per flush (unless a backlog made them long): fewer short-lived
   * objects for the garbage collector (on Bun, fewer full collections, whose
   * bursts of freed read buffers the allocator hands back to the OS).
   */
  #ids: number[] = [];
  #bodies: Uint8Array[] = [];
  #queued = 0;
  /** Encoded size of the queued frames. */
  #queueBytes = 0;
  #flushScheduled = false;
  #waitingDrain = false;
  /** Inside `#onData`: replies queued now are flushed when it returns, not in a microtask. */
  #receiving = false;

  /** Requests still running or waiting for earlier ones, in arrival order (made on the first). */
  #pipeline: ReplySlot[] = NO_SLOTS;
  #readingPaused = false;
  #overHighWater = false;
  #appPaused = false;
  #lingerTimer: TimerHandle | undefined;
  /** When a byte last moved either way (clock time); kept only with an idle timeout. */
  #lastActivity = 0;
  readonly #trackActivity: boolean;
  #idleTimer: TimerHandle | undefined;
  /** When the frame now being received started (clock time), if one is. */
  #frameStartedAt: number | undefined;
  #frameTimer: TimerHandle | undefined;
  /** During a graceful close: aborts a flush stalled on a peer that does not read. */
  #stallTimer: TimerHandle | undefined;
  /** Drains seen so far, to tell a stalled flush from a slow one. */
  #drains = 0;

  /** The pooled buffer of the flush the transport is still writing. */
  #inFlight: Uint8Array | undefined;


  /**
   * @param connection The transport connection; the session starts it.
   * @param layout Frame layout both ways.
   * @param options Resolved flow-control options.
   * @param owner Receives requests and lifecycle events.
   * @param role Server or client flow control.
   * @param idBase Added to the process's session count to make the id (a
   *   cluster node's number times 2^32).
   */
  constructor(
    connection: Connection,
    layout: FrameLayout,
    options: ResolvedSessionOptions,
    owner: SessionOwner,
    role: SessionRole = SERVER_ROLE,
    idBase = 0,
  ) {
    this.id = idBase + nextSessionId++;
    this.#connection = connection;
    this.#role = role;
    this.remote = connection.remote;
    this.#owner = owner;
    this.#options = options;
    // Borrowed bodies: onData hands chunks back, and the transport may read
    // the next one into the same memory, where frames can get the same body
    // objects again (Node, Deno, and Bun for the chunks it copies; the
    // decoder tells such memory from fresh itself).
    const borrow = options.borrowBodies;
    this.#decoder = recyclingDecoder(layout, { recycleBodies: borrow, reuseViews: borrow });
    this.#encoder = encoderFor(layout);
    this.#headerSize = layout.headerSize;
    this.#idBytes = layout.idBytes;
    this.#lengthBytes = layout.lengthBytes;
    this.#littleEndian = layout.littleEndian;
    this.#trackActivity = options.idleTimeout > 0;
  }

  /** Begin receiving: wires the connection's events to this session. */
  start(): void {
    this.#lastActivity = this.#options.clock.now();
    if (this.#options.idleTimeout > 0) this.#armIdleTimer(this.#options.idleTimeout);
    this.#connection.start(new TransportSession.#Events(this));
  }

  /** The connection's events, passed on to the session: one small object rather than four closures. */
  static readonly #Events = class SessionEvents implements ConnectionHandlers {
    readonly #session: TransportSession;
    constructor(session: TransportSession) {
      this.#session = session;
    }
    onData(chunk: Uint8Array): boolean {
      return this.#session.#onData(chunk);
    }
    onEnd(): void {
      this.#session.#onEnd();
    }
    onDrain(): void {
      this.#session.#onDrain();
    }
    onClose(error?: Error & { code?: string }): void {
      this.#session.#onClose(error);
    }
  };

  get state(): SessionState {
    const state = this.#state;
    return state === "open" || state === "closed" ? state : "closing";
  }

  get closeReason(): CloseReason | undefined {
    return this.#reason;
  }

  get queuedBytes(): number {
    return this.#queueBytes + this.#connection.backlog;
  }

  /** Requests whose replies are still held back. */
  get pendingRequests(): number {
    return this.#pipeline.length;
  }

  send(id: number, body: Uint8Array | string): boolean {
    const bytes = typeof body === "string" ? encodeUtf8(body) : body;
    this.#check(id, bytes);
    if (this.#state !== "open") return false;
    if (this.queuedBytes + this.#headerSize + bytes.length > this.#options.hardLimit) {
      this.beginClose("slow-consumer", false);
      return false;
    }
    this.#enqueue(id, bytes);
    return true;
  }

  close(): void {
    this.beginClose("closed-by-app", true);
  }

  subscribe(topic: string): boolean {
    const registry: TopicRegistry | undefined = this.#owner.topics;
    if (registry === undefined) throw new Error(`Cannot subscribe session ${this.id} to a topic: topics are a server's, and this is a client's session`);
    if (this.#state === "closed") {
      registry.check(topic);
      return false;
    }
    return registry.subscribe(this, topic);
  }

  unsubscribe(topic: string): boolean {
    return this.#owner.topics?.unsubscribe(this, topic) ?? false;
  }

  get topics(): ReadonlySet<string> {
    return this.#owner.topics?.topicsOf(this) ?? NO_TOPICS;
  }

  /**
   * Queue a frame with no hard limit (a client's own requests: it controls
   * what it sends).
   *
   * @returns `true` unless unsent bytes have passed the high-water mark (see
   * {@link TransportSession.overHighWaterMark}); then the caller should wait
   * for the owner's `writable` before sending more. `false` when not open.
   */
  enqueueUnbounded(id: number, body: Uint8Array): boolean {
    this.#check(id, body);
    if (this.#state !== "open") return false;
    this.#enqueue(id, body);
    return !this.#overHighWater;
  }

  /**
   * `true` from the moment unsent bytes pass the high-water mark until they
   * fall below the low one; the owner's `writable` fires when it turns false.
   */
  get overHighWaterMark(): boolean {
    return this.#overHighWater;
  }

  /**
   * Close with `closed-by-app` but go on receiving: send everything queued,
   * half-close, and keep dispatching frames until the peer closes (or the
   * linger timeout passes).
   */
  halfClose(): void {
    if (this.#state === "open") this.#beginClose("halfClosing", "closed-by-app", true);
  }

  /** Stop reading from the peer until {@link TransportSession.resumeReading} (client-side flow control). */
  pauseReading(): void {
    this.#appPaused = true;
    this.#updateReading();
  }

  /** Undo {@link TransportSession.pauseReading}. */
  resumeReading(): void {
    this.#appPaused = false;
    this.#updateReading();
  }

  /**
   * Move to `closing` with `reason`, once. Graceful: deliver the replies owed,
   * half-close, wait for the peer (up to the linger timeout). Otherwise abort at
   * once. A later call cannot change the reason; an abort still escalates a
   * graceful close in progress.
   */
  beginClose(reason: CloseReason, graceful: boolean, error?: Error): void {
    this.#beginClose("draining", reason, graceful, error);
  }

  /** {@link TransportSession.beginClose}, into `draining` or (for `halfClose`) `halfClosing`. */
  #beginClose(next: "draining" | "halfClosing", reason: CloseReason, graceful: boolean, error?: Error): void {
    if (this.#state !== "open") {
      if (!graceful && this.#state !== "closed") this.#connection.abort();
      return;
    }
    this.#reason = reason;
    this.#closeError = error;
    this.#enter(next);
    this.#owner.closing?.(this, reason, error);
    if (!graceful) {
      this.#connection.abort();
      return;
    }
    // Keep reading (and discarding) so that the peer's close is seen and unread
    // input does not turn our close into a reset.
    if (this.#readingPaused) {
      this.#readingPaused = false;
      this.#connection.resume();
    }
    this.#maybeFinishClosing();
    // Still draining (replies owed not all written): watch for a peer that does not read.
    if ((this.#state as Lifecycle) === next) this.#armStallTimer(this.#drains);
  }

  /**
   * Move to `next`, one of the states {@link NEXT} allows from here, and do
   * what entering it means.
   */
  #enter(next: Lifecycle): void {
    if (!NEXT[this.#state].includes(next)) throw new Error(`Session ${this.id}: no transition from ${this.#state} to ${next}`);
    this.#state = next;
    const clock = this.#options.clock;
    switch (next) {
      case "draining":
      case "halfClosing":
        // Idle and frame clocks stop; the stall timer starts once the caller has tried to flush.
        this.#clearTimers();
        break;
      case "lingering":
      case "halfClosed":
        if (this.#stallTimer !== undefined) {
          clock.clearTimeout(this.#stallTimer);
          this.#stallTimer = undefined;
        }
        this.#connection.end();
        this.#lingerTimer = clock.setTimeout(() => {
          this.#lingerTimer = undefined;
          this.#connection.abort();
        }, this.#options.lingerTimeout);
        break;
      case "closed":
        this.#clearTimers();
        // Left to the garbage collector: an aborted transport may not be done with it.
        this.#inFlight = undefined;
        this.#queued = 0;
        this.#ids = [];
        this.#bodies = [];
        this.#queueBytes = 0;
        this.#pipeline = NO_SLOTS;
        break;
    }
  }

  /** Frames from the peer are decoded and dispatched: open, or closing by `halfClose`. */
  #dispatching(): boolean {
    const state = this.#state;
    return state === "open" || state === "halfClosing" || state === "halfClosed";
  }

  /** Queue a reply for `request`, keeping request order. */
  replyTo(request: SessionRequest, id: number, body: Uint8Array): boolean {
    this.#check(id, body);
    const state = this.#state;
    if (state === "closed") return false;
    if (request.done) {
      // A late reply, after the handler finished: nothing is waiting for it.
      if (state === "lingering" || state === "halfClosed") return false;
      this.#enqueue(id, body);
      return true;
    }
    let slot = request.slot;
    if (slot === undefined) {
      if (this.#pipeline.length === 0) {
        this.#enqueue(id, body);
        return true;
      }
      slot = request.slot = new ReplySlot();
      this.#hold(slot);
    }
    slot.ids.push(id);
    slot.bodies.push(body);
    return true;
  }

  #check(id: number, body: Uint8Array): void {
    this.#encoder.check(id, body);
  }

  /** @returns `true` when nothing refers to `chunk` any more (see `borrowBodies`). */
  #onData(chunk: Uint8Array): boolean {
    this.counters.bytesIn += chunk.length;
    if (this.#trackActivity) this.#lastActivity = this.#options.clock.now();
    // Closing: read and discard until the peer closes (unless half-closed by a client).
    if (!this.#dispatching()) return true;
    const framesBefore = this.counters.framesIn;
    const wasInFrame = this.#decoder.inFrame;
    const borrow = this.#options.borrowBodies;
    this.#receiving = true;
    try {
      this.#decoder.decode(chunk, TransportSession.#onFrame, this);
    } catch (error) {
      if (error instanceof FrameTooLargeError) this.beginClose("frame-too-large", true, error);
      else this.beginClose("error", false, error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#receiving = false;
    }
    // The frame clock runs only while open (a failed chunk has started closing).
    if (this.#state === "open" && this.#options.frameTimeout > 0) {
      if (!this.#decoder.inFrame) this.#frameStartedAt = undefined;
      else if (!wasInFrame || this.counters.framesIn !== framesBefore) {
        // A new frame started in this chunk.
        this.#frameStartedAt = this.#options.clock.now();
        if (this.#frameTimer === undefined) this.#armFrameTimer(this.#options.frameTimeout);
      }
    }
    // Every reply the chunk's handlers gave at once leaves in one write, now.
    this.#flushReceived();
    // Borrowed bodies: once every handler is done and every reply copied out,
    // nothing refers to the chunk or to the decoder's reassembly buffers.
    if (!borrow || this.#queued > 0 || this.#pipeline.length > 0) return false;
    this.#decoder.releaseBodies();
    return true;
  }



  /** After a chunk: flush what its handlers queued, unless a flush is scheduled or a drain awaited. */
  #flushReceived(): void {
    if (this.#queued > 0 && !this.#flushScheduled && !this.#waitingDrain) this.#flush();
  }

  #armIdleTimer(ms: number): void {
    this.#idleTimer = this.#options.clock.setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#state !== "open") return;
      const idleFor = this.#options.clock.now() - this.#lastActivity;
      if (idleFor >= this.#options.idleTimeout) this.beginClose("idle-timeout", true);
      else this.#armIdleTimer(this.#options.idleTimeout - idleFor);
    }, ms);
  }

  #armFrameTimer(ms: number): void {
    this.#frameTimer = this.#options.clock.setTimeout(() => {
      this.#frameTimer = undefined;
      if (this.#state !== "open" || this.#frameStartedAt === undefined) return;
      if (this.#readingPaused) {
        // We stopped reading (backpressure): the peer is not dripping; restart the clock.
        this.#frameStartedAt = this.#options.clock.now();
        this.#armFrameTimer(this.#options.frameTimeout);
        return;
      }
      const pendingFor = this.#options.clock.now() - this.#frameStartedAt;
      if (pendingFor >= this.#options.frameTimeout) this.beginClose("frame-timeout", true);
      else this.#armFrameTimer(this.#options.frameTimeout - pendingFor);
    }, ms);
  }

  /**
   * A graceful close waits for its replies to be written. If the peer does not
   * read, no drain ever comes: abort when a whole linger timeout passes with
   * the flush stalled and no drain seen.
   */
  #armStallTimer(drainsBefore: number): void {
    this.#stallTimer = this.#options.clock.setTimeout(() => {
      this.#stallTimer = undefined;
      if (this.#state !== "draining" && this.#state !== "halfClosing") return;
      if (this.#waitingDrain && this.#drains === drainsBefore) this.#connection.abort();
      else this.#armStallTimer(this.#drains);
    }, this.#options.lingerTimeout);
  }

  #clearTimers(): void {
    const clock = this.#options.clock;
    for (const timer of [this.#lingerTimer, this.#idleTimer, this.#frameTimer, this.#stallTimer]) {
      if (timer !== undefined) clock.clearTimeout(timer);
    }
    this.#lingerTimer = this.#idleTimer = this.#frameTimer = this.#stallTimer = undefined;
  }

  #dispatch(id: number, body: Uint8Array): void {
    if (!this.#dispatching()) return;
    this.counters.framesIn++;
    const request = new SessionRequest(this, id, body);
    let result: void | Promise<void>;
    try {
      result = this.#owner.dispatch(request);
    } catch (error) {
      this.#handlerFailed(error, request);
      this.#settle(request);
      return;
    }
    if (result !== undefined && typeof (result as Promise<void>).then === "function") {
      if (request.slot === undefined) {
        request.slot = new ReplySlot();
        this.#hold(request.slot);
        if (this.#pipeline.length >= this.#options.maxPendingRequests) this.#updateReading();
      }
      (result as Promise<void>).then(
        () => this.#settle(request),
        (error: unknown) => {
          this.#handlerFailed(error, request);
          this.#settle(request);
        },
      );
    } else {
      this.#settle(request);
    }
  }

  /** Hold `slot`'s replies in the pipeline until the requests before it are done. */
  #hold(slot: ReplySlot): void {
    if (this.#pipeline === NO_SLOTS) this.#pipeline = [];
    this.#pipeline.push(slot);
  }

  #handlerFailed(error: unknown, request: SessionRequest): void {
    try {
      this.#owner.handlerError(error, request);
    } catch (secondary) {
      // The error hook itself failed: there is nobody left to tell; close.
      this.beginClose("error", true, secondary instanceof Error ? secondary : new Error(String(secondary)));
    }
  }

  #settle(request: SessionRequest): void {
    request.done = true;
    const slot = request.slot;
    if (slot === undefined) return;
    slot.done = true;
    if (this.#pipeline[0] === slot) this.#release();
  }

  /** Move the replies of finished requests at the head of the pipeline to the queue. */
  #release(): void {
    const pipeline = this.#pipeline;
    let released = 0;
    while (released < pipeline.length && pipeline[released]!.done) {
      const slot = pipeline[released]!;
      if (this.#state !== "closed") {
        for (let i = 0; i < slot.ids.length; i++) this.#enqueue(slot.ids[i]!, slot.bodies[i]!);
      }
      released++;
    }
    if (released > 0) pipeline.splice(0, released);
    this.#updateReading();
    this.#maybeFinishClosing();
  }

  #enqueue(id: number, body: Uint8Array): void {
    if (this.#state === "closed") return;
    const index = this.#queued++;
    this.#ids[index] = id;
    this.#bodies[index] = body;
    this.#queueBytes += this.#headerSize + body.length;
    if (!this.#flushScheduled && !this.#waitingDrain && !this.#receiving) {
      this.#flushScheduled = true;
      if (flushDue.length === 0) queueMicrotask(TransportSession.#flushDue);
      flushDue.push(this);
    }
    if (!this.#overHighWater && this.#queueBytes + this.#connection.backlog > this.#options.highWaterMark) {
      this.#updateReading();
    }
  }

  /** The decoder's frame callback (`this` is the session): no closure per session. */
  static #onFrame(this: TransportSession, id: number, body: Uint8Array): void {
    this.#dispatch(id, body);
  }

  /**
   * Flush every session that queued frames outside its own `#onData` since
   * the last microtask: one microtask for all of them (a broadcast queues to
   * many), and no closure per session.
   */
  static #flushDue(): void {
    const due = flushDue;
    flushDue = spareFlushDue;
    spareFlushDue = due;
    for (let i = 0; i < due.length; i++) {
      try {
        due[i]!.#flush();
      } catch (error) {
        // Thrown by an owner's hook: fails as it would in a microtask of its own, and the others still flush.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    due.length = 0;
  }

  /** Write every queued frame in one buffer: a copy into a slab region or a pooled buffer. */
  #flush(): void {
    this.#flushScheduled = false;
    if (this.#waitingDrain || this.#state === "closed" || this.#queued === 0) return;
    const count = this.#queued;
    const ids = this.#ids;
    const bodies = this.#bodies;
    const connection = this.#connection;
    const size = this.#queueBytes;
    if (connection.backlog === 0) this.#backlogEmpty();
    let pooled: Uint8Array | undefined;
    let out: Uint8Array;
    if (size > SLAB_FLUSH_MAX && this.#inFlight === undefined) {
      pooled = takePooled(size);
      out = pooled.length === size ? pooled : new Uint8Array(pooled.buffer, pooled.byteOffset, size);
    } else {
      out = outputSlab.take(size);
    }
    // Frames were checked when queued: write headers and bodies straight in.
    const headerSize = this.#headerSize;
    const idBytes = this.#idBytes;
    const lengthBytes = this.#lengthBytes;
    const little = this.#littleEndian;
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const body = bodies[i]!;
      bodies[i] = EMPTY; // keep no received chunk alive
      const length = body.length;
      writeField(out, offset, idBytes, ids[i]!, little);
      writeField(out, offset + idBytes, lengthBytes, length, little);
      offset += headerSize;
      if (length !== 0) out.set(body, offset);
      offset += length;
    }
    this.counters.framesOut += count;
    this.counters.bytesOut += out.length;
    this.#queued = 0;
    if (count > KEPT_QUEUE_LENGTH) {
      // A long queue (a backlog drained at once): let its arrays go.
      this.#ids = [];
      this.#bodies = [];
    }
    this.#queueBytes = 0;
    if (this.#trackActivity) this.#lastActivity = this.#options.clock.now();
    if (!connection.write(out)) this.#waitingDrain = true;
    if (connection.backlog === 0) {
      // The transport holds no reference to anything it was given.
      if (pooled !== undefined) givePooled(pooled);
      else outputSlab.reclaim(out);
      this.#backlogEmpty();
    } else if (pooled !== undefined) {
      this.#inFlight = pooled;
    }
    this.#updateReading();
    this.#maybeFinishClosing();
  }

  /** The transport's backlog is 0: the pooled buffer it was writing is ours again. */
  #backlogEmpty(): void {
    const pooled = this.#inFlight;
    if (pooled !== undefined) {
      this.#inFlight = undefined;
      givePooled(pooled);
    }
  }

  #onDrain(): void {
    if (this.#connection.backlog === 0) this.#backlogEmpty();
    this.#waitingDrain = false;
    this.#drains++;
    if (this.#trackActivity) this.#lastActivity = this.#options.clock.now();
    if (this.#queued > 0) this.#flush();
    else {
      this.#updateReading();
      this.#maybeFinishClosing();
    }
  }

  #updateReading(): void {
    if (this.#state !== "open") return;
    const queued = this.#queueBytes + this.#connection.backlog;
    if (!this.#overHighWater) {
      if (queued > this.#options.highWaterMark) this.#overHighWater = true;
    } else if (queued < this.#options.lowWaterMark) {
      this.#overHighWater = false;
      this.#owner.writable?.(this);
    }
    const pause = (this.#overHighWater && this.#role.pauseReadingOnBackpressure) || this.#appPaused ||
      this.#pipeline.length >= this.#options.maxPendingRequests;
    if (pause === this.#readingPaused) return;
    this.#readingPaused = pause;
    if (pause) this.#connection.pause();
    else {
      // The frame clock does not run while we chose not to read.
      if (this.#frameStartedAt !== undefined) this.#frameStartedAt = this.#options.clock.now();
      this.#connection.resume();
    }
  }

  /** Draining: once every reply owed is queued and flushed, half-close and linger. */
  #maybeFinishClosing(): void {
    const state = this.#state;
    if (state !== "draining" && state !== "halfClosing") return;
    if (this.#pipeline.length > 0 || this.#queued > 0) return;
    this.#enter(state === "draining" ? "lingering" : "halfClosed");
  }

  #onEnd(): void {
    // Closing already (a client's half-close included): the transport closes
    // once both sides have ended.
    if (this.#state !== "open") return;
    // The peer will send nothing more; an unfinished frame can never complete.
    // It is reported with the close (never dropped silently), not answered.
    let leftover: Error | undefined;
    try {
      this.#decoder.finish();
    } catch (error) {
      leftover = error instanceof Error ? error : new Error(String(error));
    }
    this.beginClose("peer-closed", true, leftover);
  }

  #onClose(error?: Error & { code?: string }): void {
    if (this.#state === "closed") return;
    if (this.#state === "open") {
      this.#reason = closeReasonOf(error);
      this.#closeError = error;
    }
    this.#enter("closed");
    this.#owner.closed(this, this.#reason!, this.#closeError);
  }
}
