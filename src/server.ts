/**
 * The message server: listens, keeps a registry of sessions, routes frames to
 * handlers, pushes and broadcasts, and shuts down gracefully.
 *
 * @module
 */

import type { CloseReason } from "./close_reason.ts";
import { FrameEncoder } from "./frame_encoder.ts";
import { FrameLayout, type FrameLayoutOptions } from "./frame_layout.ts";
import { createLogger, type Logger, ThrottledLog } from "./logger.ts";
import { Router } from "./router.ts";
import {
  type Handler,
  type Request,
  type ResolvedSessionOptions,
  resolveSessionOptions,
  type Session,
  type SessionOptions,
  type SessionOwner,
  SERVER_ROLE,
  TransportSession,
} from "./session.ts";
import { type Bus, LocalBus, nodeOfSession, SESSIONS_PER_NODE } from "./cluster/bus.ts";
import { Cluster, type ClusterOptions, type ServerCluster } from "./cluster/cluster.ts";
import { TopicRegistry, type TopicOptions } from "./topics.ts";
import { type ServerStats, StatsTally } from "./server_stats.ts";
import { acceptFailureKind } from "./transport/_accept_failure.ts";
import { formatHostPort } from "./transport/_socket_address.ts";
import { loadTransport } from "./transport/detect.ts";
import type { Connection, Listener, RuntimeName, SocketAddress, Transport } from "./transport/types.ts";
import { encodeUtf8 } from "./_utf8.ts";
import { DEFAULT_DRAIN_TIMEOUT, DEFAULT_HOST, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT } from "./_defaults.ts";


/** Where an error happened, as far as known. */
export interface ErrorContext {
  /** The session involved, if any. */
  session?: Session;
  /** The request whose handler failed, if any. */
  request?: Request;
}

/**
 * Options of {@link serve}. Layout options (`idBytes`, `lengthBytes`,
 * `byteOrder`, `maxBody`) apply both ways on every session.
 */
export interface ServerOptions extends FrameLayoutOptions, SessionOptions, TopicOptions {
  /**
   * Address to listen on.
   * @default {"127.0.0.1"}
   */
  host?: string;
  /**
   * TCP port; 0 picks a free one (read it from `server.address.port`).
   * @default {10086}
   */
  port?: number;
  /**
   * Share the port with other servers that set it, so that several processes
   * (one per core) serve one port: `SO_REUSEPORT` on Deno (Linux, with
   * `--unstable-net`) and Bun, where the kernel spreads new connections over
   * the listeners; on Node, only in a `node:cluster` worker (the primary
   * accepts and hands connections out in turn), or on Node 22.12 and later.
   * Each server keeps its own sessions: `sessions` lists only the
   * connections this process accepted; `push`, `broadcast` and `publish`
   * reach the others through a `cluster`. `serve --workers N` starts and
   * supervises such processes, joined by a bus of their own.
   * @default {false}
   */
  reusePort?: boolean;
  /**
   * Join a cluster: `broadcast`, `publish` and `push` then reach the
   * sessions of every node (see {@link ClusterOptions}). Without it the
   * server is a cluster of one.
   */
  cluster?: ClusterOptions;
  /** Routes frames to handlers. Handlers can also be added with `server.handle`. */
  router?: Router;
  /**
   * Lend request bodies to handlers instead of giving them away: a body (and
   * `request.text()`'s source) is valid only while its handler runs, until it
   * returns or, for an async handler, until its promise settles. Copy what you
   * keep longer with `body.slice()`. In exchange the server reads the next
   * chunk into the same memory once every frame of a chunk is handled and its
   * replies are copied out, instead of into fresh memory: on Deno this halves
   * the CPU of a 4 KiB echo. (On Node and Deno the next read goes into the same
   * bytes; on Bun, which allocates every chunk itself, chunks of up to 128 KiB
   * are copied into reused memory, and bodies split across chunks are
   * reassembled in reused memory.) A frame that arrives
   * in reused memory where an earlier one lay, with the same length, gets
   * that frame's body object again (holding the new bytes): a kept body may
   * change under you. `tlvkit serve` sets it: its handlers keep nothing.
   * @default {false}
   */
  borrowBodies?: boolean;
  /**
   * Sessions open at once; past it a new connection is closed at once with
   * reason `connection-limit` (and a warning in the log).
   * @default {10000}
   */
  maxConnections?: number;
  /** Called when a session opens. */
  onSessionOpen?: (session: Session) => void;
  /** Called once when a session closes, with its one reason. */
  onSessionClose?: (session: Session, reason: CloseReason, error?: Error) => void;
  /**
   * Called when a handler throws or rejects (`context.request` is set: a reply
   * made here keeps its place in request order), when no handler matches a
   * frame, and when accepting fails (out of file descriptors, say; not when
   * the peer reset before its accept: that is only counted, in
   * `stats().connectionsAborted`). Errors are logged whether or not this is set.
   */
  onError?: (error: Error, context: ErrorContext) => void;
  /** Receives the server's log lines. Defaults to warnings and errors on standard error. */
  logger?: Logger;
  /**
   * The socket adapter: a runtime name or an adapter. Defaults to the running
   * runtime's own (`node:net`, `Deno.listen`, `Bun.listen`).
   */
  transport?: Transport | RuntimeName;
}

/** Options of {@link Server.close}. */
export interface ServerCloseOptions {
  /**
   * Milliseconds to deliver replies still owed before the remaining sessions
   * are aborted.
   * @default {5000}
   */
  drainTimeout?: number;
}

/** The error reported when a frame's id has no handler and there is no fallback. */
export class NoHandlerError extends Error {
  /** The message id that had no handler. */
  readonly messageId: number;
  /**
   * Build the error for an unrouted message id.
   *
   * @param messageId The unrouted message id.
   */
  constructor(messageId: number) {
    super(`Cannot handle frame: no handler for message id ${messageId} and no fallback`);
    this.name = "NoHandlerError";
    this.messageId = messageId;
  }
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/**
 * A listening server. Create one with {@link serve}.
 *
 * @example
 * ```ts
 * import { serve } from "@tlvkit/tlvkit";
 * const server = await serve({ port: 0 });
 * server.handle(1, (request) => { request.reply("pong"); });
 * console.log(server.address.port > 0); // true
 * await server.close();
 * ```
 */
export class Server {
  /** The address actually bound. */
  readonly address: SocketAddress;
  /** The router frames are dispatched through. */
  readonly router: Router;
  /** The frame layout every session speaks. */
  readonly layout: FrameLayout;

  readonly #sessions = new Map<number, TransportSession>();
  readonly #options: ServerOptions;
  readonly #sessionOptions: ResolvedSessionOptions;
  readonly #logger: Logger;
  readonly #maxConnections: number;
  #listener: Listener | undefined;
  #closing: Promise<void> | undefined;
  #allClosed: (() => void) | undefined;
  readonly #owner: SessionOwner;
  readonly #limitLog = new ThrottledLog();
  readonly #acceptErrorLog = new ThrottledLog();
  readonly #abortedLog = new ThrottledLog();
  readonly #tally: StatsTally;
  readonly #topics: TopicRegistry;
  readonly #cluster: Cluster;
  /** Checks what is pushed, broadcast and published before it goes anywhere. */
  readonly #encoder: FrameEncoder;

  /**
   * Build an unbound server. Applications call {@link serve} instead, which
   * validates the options and binds.
   *
   * @param options The server options.
   * @param layout The validated frame layout.
   * @param sessionOptions The validated session options.
   * @param bus The cluster's bus (a {@link LocalBus} for a server alone).
   */
  constructor(options: ServerOptions, layout: FrameLayout, sessionOptions: ResolvedSessionOptions, bus: Bus) {
    this.#options = options;
    this.layout = layout;
    this.#sessionOptions = sessionOptions;
    this.router = options.router ?? new Router();
    this.#logger = options.logger ?? createLogger("warn");
    this.#maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.address = { host: "", port: 0 };
    this.#tally = new StatsTally(sessionOptions.clock.now());
    this.#encoder = new FrameEncoder(layout);
    const logger = this.#logger;
    this.#cluster = new Cluster(bus, {
      deliverBroadcast: (id, body, except) => this.#deliverBroadcast(id, body, except),
      deliverPublish: (topic, id, body, except) => this.#deliverPublish(topic, id, body, except),
      deliverPush: (session, id, body) => this.#sessions.get(session)?.send(id, body) ?? false,
      sessionCount: () => this.#sessions.size,
    }, logger, sessionOptions.clock, options.cluster);
    this.#topics = new TopicRegistry(options, {
      first: (topic) => this.#cluster.join(topic),
      last: (topic) => this.#cluster.leave(topic),
    });
    this.#owner = {
      topics: this.#topics,
      dispatch: (request) => {
        const handler: Handler | undefined = this.router.route(request.id);
        if (handler === undefined) throw new NoHandlerError(request.id);
        return handler(request);
      },
      handlerError: (error, request) => {
        const err = toError(error);
        const session = request.session;
        if (err instanceof NoHandlerError) logger.warn(`session ${session.id}: ${err.message}`);
        else logger.error(`session ${session.id}: handler for message id ${request.id} failed: ${err.message}`);
        this.#reportError(err, { session, request });
      },
      closing: (session, reason, error) => {
        if (reason === "frame-too-large" || reason === "frame-timeout" || reason === "slow-consumer" || reason === "error") {
          logger.warn(`session ${session.id} (${formatHostPort(session.remote.host, session.remote.port)}) closing: ${reason}${error ? ` (${error.message})` : ""}`);
        }
      },
      closed: (session, reason, error) => {
        this.#sessions.delete(session.id);
        this.#topics.leaveAll(session);
        this.#tally.closed(session, reason);
        const { framesIn, framesOut } = session.counters;
        logger.debug(
          `session ${session.id} closed: ${reason}${error && reason !== "frame-too-large" ? ` (${error.message})` : ""}` +
            ` [frames in ${framesIn}, out ${framesOut}]`,
        );
        try {
          this.#options.onSessionClose?.(session, reason, error);
        } catch (hookError) {
          this.#reportError(toError(hookError), { session });
        }
        if (this.#sessions.size === 0) this.#allClosed?.();
      },
    };
  }

  /** Open sessions by id. */
  get sessions(): ReadonlyMap<number, Session> {
    return this.#sessions;
  }

  /** The cluster this server belongs to: its node's name and the live nodes. */
  get cluster(): ServerCluster {
    return this.#cluster;
  }

  /** `true` once {@link Server.close} has been called. */
  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * The server's counters: sessions, frames and bytes in and out, and closes
   * by reason since it started (open sessions included), with the sessions
   * open and the bytes queued now. Cheap enough to call every second: it
   * walks the open sessions once. Covers this process only (with
   * `serve --workers`, each worker has its own).
   *
   * @returns A fresh snapshot.
   * @example
   * ```ts
   * import { connect, serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.fallback((request) => { request.reply(request.body); });
   * const client = await connect({ port: server.address.port });
   * await client.request(7, "ping");
   * const stats = server.stats();
   * console.log(stats.openSessions, stats.framesIn, stats.bytesIn); // 1 1 8
   * await client.close();
   * await server.close();
   * ```
   */
  stats(): ServerStats {
    return this.#tally.snapshot(this.#sessionOptions.clock.now(), this.#sessions.values(), this.#cluster.stats());
  }

  /**
   * Route frames with message id `id` to `handler` (see {@link Router.handle}).
   *
   * @param id Message id.
   * @param handler The handler.
   * @returns This server.
   * @example
   * ```ts
   * import { serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.handle(2, (request) => { request.reply(request.body); });
   * await server.close();
   * ```
   */
  handle(id: number, handler: Handler): this {
    this.router.handle(id, handler);
    return this;
  }

  /**
   * Handle frames whose id has no handler (see {@link Router.fallback}).
   *
   * @param handler The fallback handler.
   * @returns This server.
   * @example
   * ```ts
   * import { serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.fallback((request) => { request.reply(request.body); });
   * await server.close();
   * ```
   */
  fallback(handler: Handler): this {
    this.router.fallback(handler);
    return this;
  }

  /**
   * Push a frame to one session, on whichever node of the cluster holds it
   * (see {@link Session.send}; its id says which node).
   *
   * @param sessionId The session's id.
   * @param id Message id.
   * @param body Body bytes or text.
   * @returns Resolves to `false` when no node holds such an open session,
   *   the push closed it as a slow consumer, or (another node's session) the
   *   bus is down or that node did not answer within `pushTimeout`.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @throws {RangeError} When the id does not fit the layout.
   * @example
   * ```ts
   * import { serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * console.log(await server.push(42, 9, "news")); // false: no session 42
   * await server.close();
   * ```
   */
  push(sessionId: number, id: number, body: Uint8Array | string): Promise<boolean> {
    const bytes = typeof body === "string" ? encodeUtf8(body) : body;
    this.#check(id, bytes);
    if (nodeOfSession(sessionId) === this.#cluster.number) {
      return Promise.resolve(this.#sessions.get(sessionId)?.send(id, bytes) ?? false);
    }
    return this.#cluster.pushRemote(sessionId, id, bytes);
  }

  /**
   * Push a frame to every open session of every node of the cluster (on the
   * other nodes, as soon as the bus carries it there; see {@link ClusterOptions}).
   *
   * @param id Message id.
   * @param body Body bytes or text (encoded once for all sessions).
   * @param options `except`: a session id that is left out (the sender's, say).
   * @returns How many sessions of this node queued it.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @throws {RangeError} When the id does not fit the layout.
   * @example
   * ```ts
   * import { serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.broadcast(9, "news"); // 0: nobody connected yet
   * await server.close();
   * ```
   */
  broadcast(id: number, body: Uint8Array | string, options: PublishOptions = {}): number {
    const bytes = typeof body === "string" ? encodeUtf8(body) : body;
    this.#check(id, bytes);
    const except = options.except ?? 0;
    const count = this.#deliverBroadcast(id, bytes, except);
    this.#cluster.broadcast(id, bytes, except);
    return count;
  }

  /**
   * Push a frame to every session subscribed to `topic` (see
   * {@link Session.subscribe}), on every node of the cluster. Frames one node
   * publishes to one topic arrive in the order it published them.
   *
   * @param topic The topic.
   * @param id Message id.
   * @param body Body bytes or text (encoded once for all sessions).
   * @param options `except`: a session id that is left out (the sender's, say).
   * @returns How many sessions of this node queued it.
   * @throws {TypeError} When `topic` is not a non-empty string.
   * @throws {RangeError} When the topic is too long or the id does not fit the layout.
   * @throws {FrameTooLargeError} When the body is longer than `maxBody`.
   * @example
   * ```ts
   * import { serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * server.handle(1, (request) => { request.session.subscribe(request.text()); });
   * server.publish("news", 9, "hello"); // 0: nobody subscribed yet
   * await server.close();
   * ```
   */
  publish(topic: string, id: number, body: Uint8Array | string, options: PublishOptions = {}): number {
    this.#topics.check(topic);
    const bytes = typeof body === "string" ? encodeUtf8(body) : body;
    this.#check(id, bytes);
    const except = options.except ?? 0;
    const count = this.#deliverPublish(topic, id, bytes, except);
    this.#cluster.publish(topic, id, bytes, except);
    return count;
  }

  #check(id: number, body: Uint8Array): void {
    this.#encoder.check(id, body);
  }

  #deliverBroadcast(id: number, body: Uint8Array, except: number): number {
    let count = 0;
    for (const session of [...this.#sessions.values()]) {
      if (session.id !== except && session.send(id, body)) count++;
    }
    return count;
  }

  #deliverPublish(topic: string, id: number, body: Uint8Array, except: number): number {
    const subscribers = this.#topics.subscribers(topic);
    if (subscribers === undefined) return 0;
    let count = 0;
    for (const session of [...subscribers]) {
      if (session.id !== except && session.send(id, body)) count++;
    }
    return count;
  }

  /**
   * Shut down gracefully: stop accepting (new connections are refused),
   * deliver the replies owed for every frame already received, close each
   * session with `server-shutdown` once its queue is flushed, and abort the
   * sessions still unflushed at the drain timeout. Calling it again returns the
   * same promise.
   *
   * @param options The drain timeout.
   * @returns Resolves when every session has closed. Rejects with a
   *   `RangeError`, and leaves the server serving, when `drainTimeout` is not
   *   a finite number of 0 or more.
   * @example
   * ```ts
   * import { serve } from "@tlvkit/tlvkit";
   * const server = await serve({ port: 0 });
   * await server.close({ drainTimeout: 1000 });
   * ```
   */
  close(options: ServerCloseOptions = {}): Promise<void> {
    const drainTimeout = options.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT;
    // Checked before the state moves: a bad value must leave the server serving.
    if (!Number.isFinite(drainTimeout) || drainTimeout < 0) {
      return Promise.reject(
        new RangeError(`Invalid option "drainTimeout": ${String(drainTimeout)} is not a non-negative number of milliseconds`),
      );
    }
    this.#closing ??= this.#shutdown(drainTimeout).finally(() => this.#cluster.close());
    return this.#closing;
  }

  /**
   * Bind and start accepting. Called once, by {@link serve}.
   *
   * @param transport The socket adapter to listen with.
   */
  async listen(transport: Transport): Promise<void> {
    await this.#cluster.start();
    try {
      await this.#bind(transport);
    } catch (error) {
      await this.#cluster.close();
      throw error;
    }
  }

  async #bind(transport: Transport): Promise<void> {
    const host = this.#options.host ?? DEFAULT_HOST;
    const port = this.#options.port ?? DEFAULT_PORT;
    this.#listener = await transport.listen({
      host,
      port,
      reusePort: this.#options.reusePort ?? false,
      onAcceptError: (error) => this.#acceptFailed(error),
    }, (connection) => this.#accept(connection));
    (this as { address: SocketAddress }).address = this.#listener.address;
  }

  #accept(connection: Connection): void {
    const session = new TransportSession(
      connection,
      this.layout,
      this.#sessionOptions,
      this.#owner,
      SERVER_ROLE,
      this.#cluster.number * SESSIONS_PER_NODE,
    );
    if (this.#closing !== undefined) {
      session.start();
      session.beginClose("server-shutdown", false);
      return;
    }
    if (this.#sessions.size >= this.#maxConnections) {
      this.#limitLog.log(
        this.#sessionOptions.clock.now(),
        (line) => this.#logger.warn(line),
        `connection from ${formatHostPort(connection.remote.host, connection.remote.port)} closed: ` +
          `${this.#maxConnections} sessions open (connection limit)`,
      );
      session.start();
      session.beginClose("connection-limit", false);
      return;
    }
    this.#sessions.set(session.id, session);
    this.#tally.opened();
    this.#logger.debug(`session ${session.id} opened from ${formatHostPort(session.remote.host, session.remote.port)}`);
    try {
      this.#options.onSessionOpen?.(session);
    } catch (error) {
      this.#reportError(toError(error), { session });
    }
    session.start();
  }

  /**
   * A failed accept (classified in `_accept_failure.ts`): a peer gone before
   * its accept is routine under a hostile network, so it is only counted and
   * logged at debug; anything else is an error the operator should see.
   */
  #acceptFailed(error: Error & { code?: string }): void {
    const now = this.#sessionOptions.clock.now();
    if (acceptFailureKind(error.code) === "peer-gone") {
      this.#tally.acceptAborted();
      this.#abortedLog.log(now, (line) => this.#logger.debug(line), `${error.message}; accepting on`);
      return;
    }
    this.#tally.acceptFailed();
    this.#acceptErrorLog.log(now, (line) => this.#logger.error(line), `${error.message}; still accepting`);
    this.#reportError(error, {});
  }

  #reportError(error: Error, context: ErrorContext): void {
    try {
      this.#options.onError?.(error, context);
    } catch (hookError) {
      this.#logger.error(`onError hook failed: ${toError(hookError).message}`);
    }
  }

  async #shutdown(drainTimeout: number): Promise<void> {
    await this.#listener?.close();
    if (this.#sessions.size === 0) return;
    const allClosed = new Promise<void>((resolve) => {
      this.#allClosed = resolve;
    });
    for (const session of [...this.#sessions.values()]) session.beginClose("server-shutdown", true);
    const clock = this.#sessionOptions.clock;
    let timedOut = false;
    const timer = clock.setTimeout(() => {
      timedOut = true;
      if (this.#sessions.size > 0) {
        this.#logger.warn(`drain timeout: aborting ${this.#sessions.size} session(s) still unflushed`);
      }
      for (const session of [...this.#sessions.values()]) session.beginClose("server-shutdown", false);
    }, drainTimeout);
    await allClosed;
    if (!timedOut) clock.clearTimeout(timer);
  }
}

/**
 * Start a server: bind `host:port` and accept sessions, routing their frames
 * through the router.
 *
 * @param options Listen address, frame layout, flow control, hooks.
 * @returns The listening server.
 * @throws {RangeError} When an option is out of range (named in the message).
 * @throws {Error} When binding fails; `code` is `EADDRINUSE`, `EACCES`, `EPERM`...
 * @example
 * ```ts
 * import { Router, serve } from "@tlvkit/tlvkit";
 * const router = new Router().fallback((request) => { request.reply(request.body); });
 * const server = await serve({ host: "127.0.0.1", port: 0, router });
 * console.log(`listening on ${server.address.host}:${server.address.port}`);
 * await server.close();
 * ```
 */
export async function serve(options: ServerOptions = {}): Promise<Server> {
  const layout = new FrameLayout(options);
  if (options.borrowBodies !== undefined && typeof options.borrowBodies !== "boolean") {
    throw new TypeError(`Invalid option "borrowBodies": ${String(options.borrowBodies)} is not a boolean`);
  }
  const sessionOptions = { ...resolveSessionOptions(options), borrowBodies: options.borrowBodies === true };
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 0 && options.port <= 65535)) {
    throw new RangeError(`Invalid option "port": ${options.port} is not an integer from 0 to 65535`);
  }
  if (options.maxConnections !== undefined && !(Number.isInteger(options.maxConnections) && options.maxConnections >= 1)) {
    throw new RangeError(`Invalid option "maxConnections": ${options.maxConnections} is not a positive integer`);
  }
  const transport = typeof options.transport === "object" ? options.transport : await loadTransport(options.transport);
  const bus = await busFor(options.cluster);
  const server = new Server(options, layout, sessionOptions, bus);
  await server.listen(transport);
  return server;
}

/** Options of {@link Server.broadcast} and {@link Server.publish}. */
export interface PublishOptions {
  /** A session id left out (the sender's, say); on any node. */
  except?: number;
}

/** The bus `options` ask for: Redis (loaded only then), the caller's own, or none. */
async function busFor(options: ClusterOptions | undefined): Promise<Bus> {
  if (options === undefined) return new LocalBus("local");
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Invalid option "cluster": ${String(options)} is not an object`);
  }
  if (options.node !== undefined && (typeof options.node !== "string" || options.node === "" || options.node.length > 200)) {
    throw new TypeError(`Invalid option "cluster.node": ${JSON.stringify(options.node)} is not a name of 1 to 200 characters`);
  }
  const node = options.node ?? `node-${crypto.randomUUID().slice(0, 8)}`;
  if (options.bus !== undefined) {
    if (options.redis !== undefined) throw new TypeError(`Invalid option "cluster": give "redis" or "bus", not both`);
    return options.bus;
  }
  if (options.redis === undefined) throw new TypeError(`Invalid option "cluster": it needs "redis" (a URL) or "bus"`);
  const { RedisBus } = await import("./cluster/redis_bus.ts");
  return new RedisBus({ url: options.redis, node, prefix: options.prefix ?? "tlvkit" });
}
