/**
 * The Node.js adapter: `node:net` mapped onto the {@link Transport} interface.
 *
 * Node's quirks handled here: sockets are created with `allowHalfOpen` (Node
 * closes on the peer's FIN otherwise); `write()` always takes the whole buffer
 * and returns `false` at the stream's high-water mark (16 KiB on Node 20), after
 * which `drain` is awaited; an `error` event is always followed by `close`, and
 * is captured here so it never becomes an uncaught exception; writing after
 * `end()` would raise `ERR_STREAM_WRITE_AFTER_END`, so it is a no-op instead.
 *
 * **Reads go through `onread`, writes straight to the handle, where Node's
 * internals allow.** With `data` events Node reads every chunk into freshly
 * allocated memory and passes it through the readable stream's machinery;
 * with the `onread` option it reads into a buffer the caller supplies and
 * calls back directly. Every socket reads into one buffer (libuv reads one
 * socket at a time and calls back at once), and the callback copies the
 * bytes into a region of a slab all connections share (`ByteSlab`, as on
 * Bun), which the next read of any connection reuses once `onData` returned
 * `true`: an idle connection holds no read memory of its own, and the bytes
 * stay in the caches (docs/performance.md#idle-sessions). Outgoing
 * connections pass `onread` to `net.connect`; accepted sockets need an
 * internal for it, and writes that skip the writable stream need two more.
 * All of them sit behind `nodeInternals()` in `_node_internals.ts`, which
 * says which and why (docs/performance.md#node). Where it offers none,
 * accepted sockets read through `data` events and every write goes through
 * `socket.write`: on Bun's and Deno's `node:net`, under
 * `--pending-deprecation`, and when the environment has
 * `TLVKIT_NODE_PUBLIC_API=1` (the test suite runs on Node both ways). On the
 * direct path a write libuv completes at once leaves nothing behind
 * (`backlog` stays 0); one it queues stays in the backlog until libuv is
 * done with it, `write` returns `false` and `onDrain` follows, as on Deno.
 *
 * **A connection reset before it was accepted** still reaches the connection
 * listener (Linux keeps it in the accept queue), with no peer address: it is
 * destroyed and reported to `onAcceptError` as `ENOTCONN`, as Deno reports
 * the same case (`_accept_failure.ts`), and never becomes a connection. libuv
 * retries `ECONNABORTED` itself; out of descriptors, it accepts and closes
 * pending connections, and the failure arrives as the server's `error` event.
 *
 * @module
 */

import cluster from "node:cluster";
import * as net from "node:net";
import process from "node:process";
import { type HandleWriter, nodeInternals } from "./_node_internals.ts";
import { detectRuntime } from "./detect.ts";
import { ByteSlab } from "../_byte_slab.ts";
import { socketAddress } from "./_socket_address.ts";
import { peerGoneError } from "./_accept_failure.ts";
import { EarlyEvents } from "./_early_events.ts";
import { asError, errorCode, socketError } from "./_socket_error.ts";
import type {
  ConnectionHandlers,
  Connection,
  ConnectOptions,
  Listener,
  ListenOptions,
  SocketAddress,
  Transport,
  WorkerSupport,
} from "./types.ts";

/** Node 22.12 and 23.1 brought `reusePort` to `net.Server.listen`. */
function hasReusePort(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * Whether outgoing connections read through `onread` (public API): on Node
 * itself. Bun and Deno also run this adapter when asked to
 * (`loadTransport("node")`), through their `node:net` emulations, which keep
 * `data` events.
 */
const ONREAD_OFFERED = detectRuntime() === "node";

/** Node's internals, or `undefined` where only its public API is used (`_node_internals.ts`). */
const INTERNALS = nodeInternals();

/** What every socket reads into through `onread` (see the module doc). */
const SHARED_READ = new Uint8Array(64 * 1024);

/** Where the bytes read are copied to, a region per chunk (see the module doc). */
const readCopies = new ByteSlab(4 * SHARED_READ.length, SHARED_READ.length);

/** The connection a socket's events go to, kept on the socket so that one listener serves all. */
const CONNECTION = Symbol("tlvkit.connection");

function connectionOf(socket: net.Socket): NodeConnection {
  return (socket as unknown as { [CONNECTION]: NodeConnection })[CONNECTION];
}

/** Open both ways, as far as this side knows. */
const OPEN = 0;
/** `end()` was called: nothing more is written; reads go on until the peer ends. */
const ENDED = 1;
/** The socket closed and `onClose` fired: every later call and event is ignored. */
const CLOSED = 2;
type ConnectionState = typeof OPEN | typeof ENDED | typeof CLOSED;

class NodeConnection implements Connection {
  readonly remote: SocketAddress;
  readonly #socket: net.Socket;
  /** This end's address, made when first asked for (servers seldom ask). */
  #local: SocketAddress | undefined;
  #handlers: ConnectionHandlers | undefined;
  /** Events before `start()` (made on the first: most connections start before anything happens). */
  #early: EarlyEvents | undefined;
  #error: (Error & { code?: string }) | undefined;
  #state: ConnectionState = OPEN;
  /** pause() was called (and not undone): start() leaves reading off. */
  #paused = false;
  /** Writes straight to the socket's handle, with Node's internals; else `socket.write`. */
  readonly #writer: HandleWriter | undefined;

  /** The `onread` option of every socket that reads through it (see the module doc). */
  static readonly onread: net.OnReadOpts = {
    buffer: SHARED_READ,
    callback(this: net.Socket, bytesRead: number): boolean {
      const chunk = readCopies.take(bytesRead);
      chunk.set(bytesRead === SHARED_READ.length ? SHARED_READ : SHARED_READ.subarray(0, bytesRead));
      connectionOf(this).#onRead(chunk);
      return true; // pause() stops reading itself
    },
  };

  /** One listener per event serves every socket: `this` is the socket. */
  static #onError(this: net.Socket, error: Error & { code?: string }): void {
    const connection = connectionOf(this);
    connection.#error ??= error;
  }

  static #onDataEvent(this: net.Socket, chunk: Uint8Array): void {
    connectionOf(this).#onRead(chunk);
  }

  static #onEndEvent(this: net.Socket): void {
    const connection = connectionOf(this);
    connection.#emit(() => connection.#handlers!.onEnd());
  }

  static #onDrainEvent(this: net.Socket): void {
    const connection = connectionOf(this);
    connection.#emit(() => connection.#handlers!.onDrain());
  }

  static #onCloseEvent(this: net.Socket): void {
    const connection = connectionOf(this);
    if (connection.#handlers === undefined) (connection.#early ??= new EarlyEvents()).addClose(() => connection.#fireClose());
    else connection.#fireClose();
  }

  /** @param readsViaOnRead The socket was made with {@link NodeConnection.onread}. */
  constructor(socket: net.Socket, readsViaOnRead: boolean) {
    this.#socket = socket;
    (socket as unknown as { [CONNECTION]: NodeConnection })[CONNECTION] = this;
    this.#writer = INTERNALS?.handleWriter(socket, () => {
      // As the writable stream does: no drain once end() was called.
      if (this.#state === OPEN) this.#emit(() => this.#handlers!.onDrain());
    });
    this.remote = socketAddress(socket.remoteAddress, socket.remotePort);
    socket.setNoDelay(true);
    socket.on("error", NodeConnection.#onError);
    if (!readsViaOnRead) socket.on("data", NodeConnection.#onDataEvent);
    socket.on("end", NodeConnection.#onEndEvent);
    socket.on("drain", NodeConnection.#onDrainEvent);
    socket.on("close", NodeConnection.#onCloseEvent);
  }

  get local(): SocketAddress {
    return (this.#local ??= socketAddress(this.#socket.localAddress, this.#socket.localPort));
  }

  start(handlers: ConnectionHandlers): void {
    if (this.#handlers) throw new Error("Cannot start a connection twice");
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = undefined;
    // A handler that throws while they are replayed closes the connection with that error, as on Bun and Deno.
    early?.replay(() => this.#state === CLOSED, (error) => this.#socket.destroy(asError(error)));
    if (this.#state !== CLOSED && !this.#paused) this.#socket.resume();
  }

  get backlog(): number {
    if (this.#state === CLOSED) return 0;
    // Writes to the handle never go through the stream, whose length is then always 0.
    return this.#writer !== undefined ? this.#writer.backlog : this.#socket.writableLength;
  }

  write(bytes: Uint8Array): boolean {
    if (this.#state !== OPEN || this.#socket.destroyed) return false;
    return this.#writer !== undefined ? this.#writer.write(bytes) : this.#socket.write(bytes);
  }

  end(): void {
    if (this.#advance(ENDED)) this.#socket.end();
  }

  abort(): void {
    if (this.#state !== CLOSED) this.#socket.destroy();
  }

  pause(): void {
    this.#paused = true;
    if (this.#state !== CLOSED) this.#socket.pause();
  }

  resume(): void {
    this.#paused = false;
    if (this.#state !== CLOSED && this.#handlers !== undefined) this.#socket.resume();
  }

  setNoDelay(noDelay: boolean): void {
    if (this.#state !== CLOSED) this.#socket.setNoDelay(noDelay);
  }

  /** Move the state forward to `next`: `false` when it is there or past it already. */
  #advance(next: typeof ENDED | typeof CLOSED): boolean {
    if (this.#state >= next) return false;
    this.#state = next;
    return true;
  }

  #onRead(chunk: Uint8Array): void {
    const handlers = this.#handlers;
    if (handlers === undefined) {
      (this.#early ??= new EarlyEvents()).add(() => this.#onRead(chunk));
      return;
    }
    if (this.#state === CLOSED) return;
    // Returned true: nothing refers to the chunk, so the next read's copy may go over it.
    if (handlers.onData(chunk) === true) readCopies.reclaim(chunk);
  }

  #emit(event: () => void): void {
    if (this.#handlers === undefined) (this.#early ??= new EarlyEvents()).add(event);
    else if (this.#state !== CLOSED) event();
  }

  #fireClose(): void {
    if (this.#advance(CLOSED)) this.#handlers!.onClose(this.#error);
  }
}

class NodeListener implements Listener {
  readonly address: SocketAddress;
  readonly #server: net.Server;
  #closing: Promise<void> | undefined;

  constructor(server: net.Server) {
    this.#server = server;
    const bound = server.address() as net.AddressInfo;
    this.address = socketAddress(bound.address, bound.port);
  }

  close(): Promise<void> {
    this.#closing ??= new Promise((resolve) => {
      // Resolves once the listening socket is closed; open connections are kept.
      this.#server.close(() => resolve());
      // server.close waits for connections before calling back: stop waiting.
      setImmediate(resolve);
    });
    return this.#closing;
  }
}

/**
 * The Node.js transport.
 *
 * @example
 * ```ts ignore
 * import { nodeTransport } from "./src/transport/node.ts";
 * const listener = await nodeTransport.listen({ host: "127.0.0.1", port: 0 }, (c) => c.abort());
 * await listener.close();
 * ```
 */
export const nodeTransport: Transport = {
  runtime: "node",

  listen(options: ListenOptions, onConnection: (connection: Connection) => void): Promise<Listener> {
    const { host, port } = options;
    // In a cluster worker a shared listen goes through the primary, which
    // accepts and hands connections to the workers round-robin.
    const shared = options.reusePort === true;
    if (shared && !cluster.isWorker && !hasReusePort()) {
      const why = `reusePort needs Node 22.12 or later, or a node:cluster worker (this is Node ${process.versions.node})`;
      return Promise.reject(socketError("listen on", host, port, "ENOTSUP", new Error(why)));
    }
    return new Promise((resolve, reject) => {
      // Paused: nothing is read before start(), nor before a rebuild to read through onread.
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
        if (accepted.remoteAddress === undefined) {
          // Reset before we got to it (getpeername fails): what Deno's accept() rejects with ENOTCONN.
          accepted.destroy();
          options.onAcceptError?.(peerGoneError(host, port));
          return;
        }
        const socket = INTERNALS === undefined ? accepted : INTERNALS.withOnRead(accepted, server, NodeConnection.onread);
        if (socket === undefined) accepted.destroy();
        else onConnection(new NodeConnection(socket, INTERNALS !== undefined));
      });
      const onStartError = (error: Error): void => {
        reject(socketError("listen on", host, port, errorCode(error), error));
      };
      server.once("error", onStartError);
      const listenOptions: net.ListenOptions & { reusePort?: boolean } = { host, port, exclusive: !shared };
      if (shared && !cluster.isWorker) listenOptions.reusePort = true;
      server.listen(listenOptions, () => {
        server.off("error", onStartError);
        server.on("error", (error: Error) => {
          // Accept failures (EMFILE, ...) arrive here; the server keeps listening.
          options.onAcceptError?.(socketError("accept on", host, port, errorCode(error), error));
        });
        resolve(new NodeListener(server));
      });
    });
  },

  workerSupport(): WorkerSupport {
    // node:cluster on every Node version: the primary accepts and balances.
    return { mode: "cluster" };
  },

  connect(options: ConnectOptions): Promise<Connection> {
    const { host, port } = options;
    return new Promise((resolve, reject) => {
      // net.connect takes onread: no internal needed.
      const socket = !ONREAD_OFFERED
        ? net.connect({ host, port, allowHalfOpen: true })
        : net.connect({ host, port, allowHalfOpen: true, onread: NodeConnection.onread });
      const onError = (error: Error): void => {
        socket.destroy();
        reject(socketError("connect to", host, port, errorCode(error), error));
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.off("error", onError);
        const connection = new NodeConnection(socket, ONREAD_OFFERED);
        // A client may ask for its own address after the close, when the socket no longer knows it.
        void connection.local;
        resolve(connection);
      });
    });
  },
};
