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
 * calls back directly. The adapter supplies regions of the connection's own
 * read slabs (`_read_regions.ts`, as the Deno adapter does): a chunk's region
 * is read into again only once `onData` returned `true`. Outgoing
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
import { ReadRegions } from "./_read_regions.ts";
import { socketAddress } from "./_socket_address.ts";
import { peerGoneError } from "./_accept_failure.ts";
import { errorCode, socketError } from "./_socket_error.ts";
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

/**
 * What every socket reads into until its first read: Node takes a read
 * buffer from `onread.buffer()` when it makes a socket, so a buffer of its
 * own would cost an idle connection 4 KiB. libuv reads one socket at a time
 * and calls back at once, and the callback copies the bytes out before
 * returning, so one buffer serves them all. It is no larger than a fresh
 * {@link ReadRegions}' first region (4 KiB), which the copy goes into.
 */
const FIRST_READ = new Uint8Array(4 * 1024);

/**
 * A socket's reads: the `onread` option to create it with, and the connection
 * its chunks go to, named once made (before the first read: an accepted
 * socket is created paused, an outgoing one reads once `connect` has fired).
 */
interface SocketReads {
  /** `undefined` where `data` events are used instead. */
  readonly onread: net.OnReadOpts | undefined;
  readonly regions: ReadRegions;
  connection: NodeConnection | undefined;
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
  readonly local: SocketAddress;
  readonly #socket: net.Socket;
  readonly #regions: ReadRegions;
  #handlers: ConnectionHandlers | undefined;
  #early: Array<() => void> = [];
  #error: (Error & { code?: string }) | undefined;
  #state: ConnectionState = OPEN;
  /** pause() was called (and not undone): start() leaves reading off. */
  #paused = false;
  /** Writes straight to the socket's handle, with Node's internals; else `socket.write`. */
  readonly #writer: HandleWriter | undefined;

  /**
   * Reads for a socket about to be created: through `onread` when
   * `viaOnRead`, into regions of the connection's own once it has read, until
   * then into {@link FIRST_READ}, which every socket shares.
   */
  static reads(viaOnRead: boolean): SocketReads {
    const regions = new ReadRegions();
    let hasRead = false;
    const reads: SocketReads = {
      regions,
      connection: undefined,
      onread: viaOnRead
        ? {
          // Node asks for a buffer when it makes the socket and after each read.
          buffer: () => hasRead ? regions.take() : FIRST_READ,
          callback: (bytesRead, region) => {
            let chunk: Uint8Array;
            if (region === FIRST_READ) {
              // Copied out before returning: the next socket's read reuses FIRST_READ.
              hasRead = true;
              const own = regions.take();
              own.set(FIRST_READ.subarray(0, bytesRead));
              chunk = regions.filled(own, bytesRead);
            } else {
              chunk = regions.filled(region, bytesRead);
            }
            reads.connection!.#onRead(chunk);
            return true; // pause() stops reading itself
          },
        }
        : undefined,
    };
    return reads;
  }

  constructor(socket: net.Socket, reads: SocketReads) {
    this.#socket = socket;
    this.#regions = reads.regions;
    reads.connection = this;
    this.#writer = INTERNALS?.handleWriter(socket, () => {
      // As the writable stream does: no drain once end() was called.
      if (this.#state === OPEN) this.#emit(() => this.#handlers!.onDrain());
    });
    this.remote = socketAddress(socket.remoteAddress, socket.remotePort);
    this.local = socketAddress(socket.localAddress, socket.localPort);
    socket.setNoDelay(true);
    socket.on("error", (error: Error & { code?: string }) => {
      this.#error ??= error;
    });
    if (reads.onread === undefined) socket.on("data", (chunk: Uint8Array) => this.#onRead(chunk));
    socket.on("end", () => this.#emit(() => this.#handlers!.onEnd()));
    socket.on("drain", () => this.#emit(() => this.#handlers!.onDrain()));
    socket.on("close", () => this.#emit(() => this.#fireClose()));
  }

  start(handlers: ConnectionHandlers): void {
    if (this.#handlers) throw new Error("Cannot start a connection twice");
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = [];
    for (const event of early) event();
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

  release(chunk: Uint8Array): void {
    if (this.#state !== CLOSED) this.#regions.release(chunk);
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
      this.#early.push(() => this.#onRead(chunk));
      return;
    }
    if (this.#state === CLOSED) return;
    // Returned true: nothing refers to the chunk, so the next read goes into its bytes.
    if (handlers.onData(chunk) === true) this.#regions.release(chunk);
  }

  #emit(event: () => void): void {
    if (this.#handlers === undefined) this.#early.push(event);
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
        const reads = NodeConnection.reads(INTERNALS !== undefined);
        const socket = reads.onread === undefined ? accepted : INTERNALS!.withOnRead(accepted, server, reads.onread);
        if (socket === undefined) accepted.destroy();
        else onConnection(new NodeConnection(socket, reads));
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
      const reads = NodeConnection.reads(ONREAD_OFFERED);
      const socket = reads.onread === undefined
        ? net.connect({ host, port, allowHalfOpen: true })
        : net.connect({ host, port, allowHalfOpen: true, onread: reads.onread });
      const onError = (error: Error): void => {
        socket.destroy();
        reject(socketError("connect to", host, port, errorCode(error), error));
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.off("error", onError);
        resolve(new NodeConnection(socket, reads));
      });
    });
  },
};
