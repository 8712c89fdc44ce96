/**
 * The message client: connect, send frames, receive frames, request/reply.
 *
 * @module
 */

import { type Clock, systemClock, type TimerHandle } from "./clock.ts";
import type { CloseReason } from "./close_reason.ts";
import type { Frame } from "./frame_decoder.ts";
import { FrameLayout, type FrameLayoutOptions } from "./frame_layout.ts";
import {
  CLIENT_ROLE,
  type Request,
  type ResolvedSessionOptions,
  resolveSessionOptions,
  type SessionOptions,
  type SessionOwner,
  TransportSession,
} from "./session.ts";
import { formatHostPort } from "./transport/_socket_address.ts";
import { loadTransport } from "./transport/detect.ts";
import type { RuntimeName, SocketAddress, Transport } from "./transport/types.ts";
import { encodeUtf8 } from "./_utf8.ts";
import { DEFAULT_HOST, DEFAULT_PORT } from "./_defaults.ts";


/** Options of {@link connect}. Layout options must match the server's. */
export interface ClientOptions extends FrameLayoutOptions, Omit<SessionOptions, "hardLimit" | "maxPendingRequests"> {
  /**
   * Host to connect to.
   * @default {"127.0.0.1"}
   */
  host?: string;
  /**
   * Port to connect to.
   * @default {10086}
   */
  port?: number;
  /**
   * Receives every frame that no pending {@link Client.request} claims. When
   * set, such frames do not go to async iteration.
   */
  onFrame?: (frame: Frame) => void;
  /**
   * Frames held for async iteration past which the client stops reading from
   * the server until the iterator catches up.
   * @default {1024}
   */
  maxBufferedFrames?: number;
  /**
   * Heartbeat: every `interval` milliseconds send an empty frame with message
   * id `id` (a ping) and expect the server to answer it (a tlvkit server
   * echoes it: the bundled app echoes every id but 1001; route `id` to an echo
   * handler in your own server). Empty frames with that id are then taken as
   * pongs: they never reach `request`, `onFrame` or iteration. When nothing at
   * all arrives from the server for `timeout` milliseconds (default three
   * intervals), the server is taken for dead and the connection is closed with
   * reason `idle-timeout`. Pair it with the server's `idleTimeout` (longer
   * than `interval`) so that each side detects a dead peer.
   */
  keepAlive?: KeepAliveOptions;
  /**
   * Called when `onFrame` throws. Defaults to logging the error with
   * `console.error`; the connection goes on either way.
   */
  onError?: (error: Error) => void;
  /** The socket adapter: a runtime name or an adapter. Defaults to the running runtime's. */
  transport?: Transport | RuntimeName;
  /**
   * Time source for every timer of the connection: the session's, keepalive
   * pings and their timeout, and request timeouts (tests inject a fake one).
   * @default {systemClock}
   */
  clock?: Clock;
}

/** Heartbeat options of a client (see {@link ClientOptions.keepAlive}). */
export interface KeepAliveOptions {
  /** Message id of pings (and of the pongs expected back). */
  id: number;
  /** Milliseconds between pings. */
  interval: number;
  /**
   * Milliseconds without any byte from the server before the connection is
   * closed with `idle-timeout`.
   * @default {3 * interval}
   */
  timeout?: number;
}

/** Options of {@link Client.request}. */
export interface RequestOptions {
  /** Milliseconds to wait for the reply; 0 waits as long as the connection lives. @default {0} */
  timeout?: number;
}

/** How a client connection ended. */
export interface ClientClose {
  /** The one close reason. */
  reason: CloseReason;
  /** The error behind it, if any. */
  error?: Error;
}

/** A request was still waiting for its reply when the connection closed. */
export class ConnectionClosedError extends Error {
  /** Why the connection closed. */
  readonly reason: CloseReason;
  /**
   * Build the error.
   *
   * @param reason Why the connection closed.
   */
  constructor(reason: CloseReason) {
    super(`Cannot complete request: connection closed (${reason}) before the reply arrived`);
    this.name = "ConnectionClosedError";
    this.reason = reason;
  }
}

/** A request's reply did not arrive within its timeout. */
export class RequestTimeoutError extends Error {
  /** The timeout, in milliseconds. */
  readonly timeout: number;
  /**
   * Build the error.
   *
   * @param timeout The timeout in milliseconds.
   */
  constructor(timeout: number) {
    super(`Cannot complete request: no reply within ${timeout} ms`);
    this.name = "RequestTimeoutError";
    this.timeout = timeout;
  }
}

interface Waiter {
  resolve(frame: Frame): void;
  reject(error: Error): void;
  /** Timed out: its reply, when it comes, is discarded so later replies stay matched. */
  abandoned: boolean;
  timer: TimerHandle | undefined;
}

/**
 * A connection to a tlvkit (or any TLV-speaking) server. Create one with
 * {@link connect}.
 *
 * **Ordering rule for {@link Client.request}.** Replies are matched to requests
 * first in, first out: the n-th frame to arrive while requests are pending
 * resolves the oldest pending request. This is exact for servers that answer
 * every request with one frame, in order (tlvkit's guarantee). Frames that
 * arrive while no request is pending (pushes) go to `onFrame` or to async
 * iteration. Do not mix `request` with pushes that can arrive at any time.
 *
 * @example
 * ```ts
 * import { connect, serve } from "@tlvkit/tlvkit";
 * const server = await serve({ port: 0 });
 * server.fallback((request) => { request.reply(request.body); });
 * const client = await connect({ port: server.address.port });
 * const reply = await client.request(7, "ping");
 * console.log(reply.id, new TextDecoder().decode(reply.body)); // 7 ping
 * await client.close();
 * await server.close();
 * ```
 */
export class Client implements AsyncIterable<Frame> {
  /** The server's address. */
  readonly remote: SocketAddress;
  /** Resolves once, when the connection has closed, with its one reason. */
  readonly closed: Promise<ClientClose>;

  readonly #session: TransportSession;
  readonly #options: ClientOptions;
  readonly #maxBuffered: number;
  /** The session's clock, which keepalive and request timeouts run on too. */
  readonly #clock: Clock;
  #waiters: Waiter[] = [];
  #buffered: Frame[] = [];
  #readers: Array<(result: IteratorResult<Frame>) => void> = [];
  #readingPaused = false;
  #writable: Array<() => void> = [];
  #isClosed = false;
  #keepAliveTimer: TimerHandle | undefined;
  #pingsOutstanding = 0;

  /**
   * Wrap a session as a client. Applications call {@link connect} instead.
   *
   * @param transportSession Builds the session, given the client's event sink.
   * @param options The client options.
   */
  constructor(transportSession: (owner: SessionOwner) => TransportSession, options: ClientOptions) {
    this.#options = options;
    this.#maxBuffered = options.maxBufferedFrames ?? 1024;
    this.#clock = options.clock ?? systemClock;
    let settle!: (close: ClientClose) => void;
    this.closed = new Promise((resolve) => {
      settle = resolve;
    });
    this.#session = transportSession({
      dispatch: (request) => this.#receive(request),
      handlerError: (error) => {
        // onFrame threw: the application's bug; report it without losing the connection.
        const err = error instanceof Error ? error : new Error(String(error));
        if (options.onError) options.onError(err);
        else console.error(`tlvkit client: onFrame failed: ${err.message}`);
      },
      writable: () => {
        const waiting = this.#writable;
        this.#writable = [];
        for (const resolve of waiting) resolve();
      },
      closed: (_session, reason, error) => {
        this.#isClosed = true;
        if (this.#keepAliveTimer !== undefined) this.#clock.clearTimeout(this.#keepAliveTimer);
        for (const waiter of this.#waiters) {
          if (waiter.timer !== undefined) this.#clock.clearTimeout(waiter.timer);
          if (!waiter.abandoned) waiter.reject(new ConnectionClosedError(reason));
        }
        this.#waiters = [];
        for (const read of this.#readers) read({ value: undefined, done: true });
        this.#readers = [];
        for (const resolve of this.#writable) resolve();
        this.#writable = [];
        settle(error === undefined ? { reason } : { reason, error });
      },
    });
    this.remote = this.#session.remote;
    if (options.keepAlive !== undefined) this.#startKeepAlive(options.keepAlive);
  }

  #startKeepAlive(keepAlive: KeepAliveOptions): void {
    const { id, interval } = keepAlive;
    const timeout = keepAlive.timeout ?? 3 * interval;
    const empty = new Uint8Array(0);
    let lastBytesIn = this.#session.counters.bytesIn;
    let silentFor = 0;
    const tick = (): void => {
      this.#keepAliveTimer = undefined;
      if (this.#session.state !== "open") return;
      const bytesIn = this.#session.counters.bytesIn;
      silentFor = bytesIn === lastBytesIn ? silentFor + interval : 0;
      lastBytesIn = bytesIn;
      if (silentFor >= timeout) {
        this.#session.beginClose("idle-timeout", false);
        return;
      }
      this.#pingsOutstanding++;
      this.#session.enqueueUnbounded(id, empty);
      this.#keepAliveTimer = this.#clock.setTimeout(tick, interval);
    };
    this.#keepAliveTimer = this.#clock.setTimeout(tick, interval);
  }

  /** `true` once the connection has closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Bytes queued or written but not yet taken by the operating system. */
  get queuedBytes(): number {
    return this.#session.queuedBytes;
  }

  /**
   * Send a frame. Frames sent in the same turn leave in one write.
   *
   * @param id Message id.
   * @param body Body bytes, or text sent as UTF-8.
   * @returns `true` while unsent bytes are below the high-water mark; `false`
   * when you should `await client.writable()` before sending more. Nothing is
   * dropped either way.
   * @throws {Error} When the connection is closed.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.fallback(() => {});
   * const client = await connect({ port: server.address.port });
   * client.send(1, "fire and forget");
   * await client.close();
   * await server.close();
   * ```
   */
  send(id: number, body: Uint8Array | string): boolean {
    const bytes = typeof body === "string" ? encodeUtf8(body) : body;
    if (this.#session.state !== "open") {
      throw new Error(`Cannot send: connection to ${formatHostPort(this.remote.host, this.remote.port)} is ${this.#session.state}`);
    }
    return this.#session.enqueueUnbounded(id, bytes);
  }

  /**
   * Resolves once unsent bytes, having passed the high-water mark, have fallen
   * below the low-water mark (at once unless they are over the high one), or
   * when the connection closes.
   *
   * @returns A promise to await before sending more.
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.fallback(() => {});
   * const client = await connect({ port: server.address.port });
   * for (let i = 0; i < 100; i++) if (!client.send(1, "x")) await client.writable();
   * await client.close();
   * await server.close();
   * ```
   */
  writable(): Promise<void> {
    // The session's own hysteresis flag, the one `send` answers from: a
    // threshold of our own could wait for a transition that never comes.
    if (this.#isClosed || !this.#session.overHighWaterMark) return Promise.resolve();
    return new Promise((resolve) => this.#writable.push(resolve));
  }

  /**
   * Send a frame and resolve with the reply (see the ordering rule on
   * {@link Client}).
   *
   * @param id Message id.
   * @param body Body bytes or text.
   * @param options A timeout.
   * @returns The reply frame.
   * @throws {ConnectionClosedError} When the connection closes first.
   * @throws {RequestTimeoutError} When the timeout passes first.
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.fallback((request) => { request.reply(request.body); });
   * const client = await connect({ port: server.address.port });
   * const reply = await client.request(5, "hi", { timeout: 5000 });
   * await client.close();
   * await server.close();
   * ```
   */
  request(id: number, body: Uint8Array | string, options: RequestOptions = {}): Promise<Frame> {
    try {
      this.send(id, body);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<Frame>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, abandoned: false, timer: undefined };
      const timeout = options.timeout ?? 0;
      if (timeout > 0) {
        waiter.timer = this.#clock.setTimeout(() => {
          waiter.abandoned = true;
          waiter.timer = undefined;
          reject(new RequestTimeoutError(timeout));
        }, timeout);
      }
      this.#waiters.push(waiter);
    });
  }

  /**
   * Frames that no request claimed, as they arrive; ends when the connection
   * closes (after every frame received before).
   *
   * @returns An async iterator of frames.
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.fallback((request) => { request.reply(request.body); request.session.close(); });
   * const client = await connect({ port: server.address.port });
   * client.send(3, "one");
   * for await (const frame of client) console.log(frame.id); // 3
   * await server.close();
   * ```
   */
  [Symbol.asyncIterator](): AsyncIterator<Frame> {
    return {
      next: (): Promise<IteratorResult<Frame>> => {
        const frame = this.#buffered.shift();
        if (frame !== undefined) {
          if (this.#readingPaused && this.#buffered.length <= this.#maxBuffered / 2) {
            this.#readingPaused = false;
            this.#session.resumeReading();
          }
          return Promise.resolve({ value: frame, done: false });
        }
        if (this.#isClosed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.#readers.push(resolve));
      },
      return: (): Promise<IteratorResult<Frame>> => Promise.resolve({ value: undefined, done: true }),
    };
  }

  /**
   * Close gracefully: send everything queued, half-close, keep receiving
   * until the server closes its side (so replies in flight still arrive), then
   * resolve. Waits at most the linger timeout for the server.
   *
   * @returns How the connection ended.
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * const client = await connect({ port: server.address.port });
   * await client.close();
   * await server.close();
   * ```
   */
  close(): Promise<ClientClose> {
    this.#session.halfClose();
    return this.closed;
  }

  /**
   * Close at once, discarding anything unsent.
   *
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * const client = await connect({ port: server.address.port });
   * client.abort();
   * await server.close();
   * ```
   */
  abort(): void {
    this.#session.beginClose("closed-by-app", false);
  }

  #receive(request: Request): void {
    const keepAlive = this.#options.keepAlive;
    if (keepAlive !== undefined && this.#pingsOutstanding > 0 && request.id === keepAlive.id && request.body.length === 0) {
      this.#pingsOutstanding--; // a pong
      return;
    }
    const frame: Frame = { id: request.id, body: request.body };
    while (this.#waiters.length > 0) {
      const waiter = this.#waiters.shift()!;
      if (waiter.abandoned) return; // the late reply of a timed-out request
      if (waiter.timer !== undefined) this.#clock.clearTimeout(waiter.timer);
      waiter.resolve(frame);
      return;
    }
    if (this.#options.onFrame) {
      this.#options.onFrame(frame);
      return;
    }
    const read = this.#readers.shift();
    if (read) {
      read({ value: frame, done: false });
      return;
    }
    this.#buffered.push(frame);
    if (!this.#readingPaused && this.#buffered.length > this.#maxBuffered) {
      this.#readingPaused = true;
      this.#session.pauseReading();
    }
  }
}

/**
 * Connect to a server.
 *
 * @param options Address, frame layout (must match the server's), hooks.
 * @returns The connected client.
 * @throws {Error} When the connection fails; the message names host:port and
 * `code` holds the system code (`ECONNREFUSED`...).
 * @example
 * ```ts
 * import { connect, serve } from "@tlvkit/tlvkit";
 * const server = await serve({ port: 0 });
 * const client = await connect({ host: "127.0.0.1", port: server.address.port });
 * await client.close();
 * await server.close();
 * ```
 */
export async function connect(options: ClientOptions = {}): Promise<Client> {
  const layout = new FrameLayout(options);
  // A server mid-frame is not a slow-drip attacker to a client: no frame timeout unless asked.
  const sessionOptions: ResolvedSessionOptions = resolveSessionOptions({ frameTimeout: 0, ...options });
  const host = options.host ?? DEFAULT_HOST;
  const port = options.port ?? DEFAULT_PORT;
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new RangeError(`Invalid option "port": ${port} is not an integer from 0 to 65535`);
  }
  const keepAlive = options.keepAlive;
  if (keepAlive !== undefined) {
    if (!(Number.isInteger(keepAlive.id) && keepAlive.id >= 0 && keepAlive.id <= layout.maxId)) {
      throw new RangeError(`Invalid option "keepAlive.id": ${keepAlive.id} is not an integer from 0 to ${layout.maxId}`);
    }
    if (!(Number.isInteger(keepAlive.interval) && keepAlive.interval > 0)) {
      throw new RangeError(`Invalid option "keepAlive.interval": ${keepAlive.interval} is not a positive integer of milliseconds`);
    }
    const timeout = keepAlive.timeout;
    if (timeout !== undefined && !(Number.isInteger(timeout) && timeout >= keepAlive.interval)) {
      throw new RangeError(`Invalid option "keepAlive.timeout": ${timeout} is not an integer of milliseconds at least the interval`);
    }
  }
  const transport = typeof options.transport === "object" ? options.transport : await loadTransport(options.transport);
  const connection = await transport.connect({ host, port });
  let session: TransportSession | undefined;
  const client = new Client((owner) => {
    session = new TransportSession(connection, layout, sessionOptions, owner, CLIENT_ROLE);
    return session;
  }, options);
  session!.start();
  return client;
}
