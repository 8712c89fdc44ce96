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
 * **Reads go through `onread`, not `data` events.** With `data` events Node
 * reads every chunk into freshly allocated memory and passes it through the
 * readable stream's machinery; with the `onread` option it reads into a buffer
 * the caller supplies and calls back directly. The adapter supplies regions of
 * the connection's own read slabs (`_read_regions.ts`, as the Deno adapter
 * does): a chunk's region is read into again only once `onData` returned
 * `true`. Measured with a raw 4 KiB echo, interleaved: 5.7 µs of server CPU
 * per frame with `data` events, 3.4 with `onread` into a reused buffer (and a
 * copy per chunk). Outgoing connections pass `onread` to `net.connect`.
 * `net.Server` has no such option, so an accepted socket (created paused with
 * `pauseOnConnect`, before anything is read) hands its handle to a new
 * `net.Socket` built with `onread`, as Node's own `onconnection` builds it,
 * and the server's connection count follows the new socket (`_handle`, the
 * `handle` option and `_server` are Node internals, the ones Node's own
 * `onconnection` uses; checked on Node 20, and covered by the transport tests
 * on whichever Node runs them).
 *
 * @module
 */

import cluster from "node:cluster";
import * as net from "node:net";
import process from "node:process";
import { ReadRegions } from "./_read_regions.ts";
import { socketAddress } from "./_socket_address.ts";
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

/** Node's `onread` socket option: read into the buffer `buffer()` gives, then call `callback`. */
interface OnRead {
  buffer: () => Uint8Array;
  callback: (bytesRead: number, buffer: Uint8Array) => boolean;
}

/**
 * Read through `onread` on Node itself. Bun and Deno also run this adapter
 * when asked to (`loadTransport("node")`), through their `node:net`
 * emulations: Bun cannot rebuild an accepted socket from its handle, so both
 * keep `data` events there.
 */
const READS_VIA_ONREAD = typeof process.versions.bun !== "string" && typeof process.versions.deno !== "string";

/** The Node internals an accepted socket is rebuilt from (see the module doc). */
interface InternalSocket {
  _handle: object | null;
  _server?: net.Server | null;
  server?: net.Server | null;
}

/**
 * Rebuild an accepted socket, created paused with nothing read, as one that
 * reads through `onread`. `undefined` when it has no handle (never seen).
 */
function withOnRead(accepted: net.Socket, server: net.Server, onread: OnRead): net.Socket | undefined {
  const internal = accepted as unknown as InternalSocket;
  const handle = internal._handle;
  if (handle === null || typeof handle !== "object") return undefined;
  internal._handle = null;
  const options = { handle, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true, onread };
  const socket = new net.Socket(options as net.SocketConstructorOpts);
  // As Node's onconnection sets them: closing the socket counts down the server's connections.
  const rebuilt = socket as unknown as InternalSocket;
  rebuilt.server = server;
  rebuilt._server = server;
  return socket;
}

/**
 * A socket's reads: the `onread` option to create it with, and the connection
 * its chunks go to, named once made (before the first read: an accepted
 * socket is created paused, an outgoing one reads once `connect` has fired).
 */
interface SocketReads {
  /** `undefined` where `data` events are used instead (see {@link READS_VIA_ONREAD}). */
  readonly onread: OnRead | undefined;
  readonly regions: ReadRegions;
  connection: NodeConnection | undefined;
}

class NodeConnection implements Connection {
  readonly remote: SocketAddress;
  readonly local: SocketAddress;
  readonly #socket: net.Socket;
  readonly #regions: ReadRegions;
  #handlers: ConnectionHandlers | undefined;
  #early: Array<() => void> = [];
  #error: (Error & { code?: string }) | undefined;
  #closed = false;
  #ended = false;
  /** pause() was called (and not undone): start() leaves reading off. */
  #paused = false;

  /** Reads for a socket about to be created, into regions of its own. */
  static reads(): SocketReads {
    const regions = new ReadRegions();
    const reads: SocketReads = {
      regions,
      connection: undefined,
      onread: READS_VIA_ONREAD
        ? {
          buffer: () => regions.take(),
          callback: (bytesRead, region) => {
            reads.connection!.#onRead(regions.filled(region, bytesRead));
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
    if (!this.#closed && !this.#paused) this.#socket.resume();
  }

  get backlog(): number {
    return this.#closed ? 0 : this.#socket.writableLength;
  }

  write(bytes: Uint8Array): boolean {
    if (this.#closed || this.#ended || this.#socket.destroyed) return false;
    return this.#socket.write(bytes);
  }

  end(): void {
    if (this.#closed || this.#ended) return;
    this.#ended = true;
    this.#socket.end();
  }

  abort(): void {
    if (this.#closed) return;
    this.#socket.destroy();
  }

  pause(): void {
    this.#paused = true;
    if (!this.#closed) this.#socket.pause();
  }

  resume(): void {
    this.#paused = false;
    if (!this.#closed && this.#handlers !== undefined) this.#socket.resume();
  }

  setNoDelay(noDelay: boolean): void {
    if (!this.#closed) this.#socket.setNoDelay(noDelay);
  }

  release(chunk: Uint8Array): void {
    if (!this.#closed) this.#regions.release(chunk);
  }

  #onRead(chunk: Uint8Array): void {
    const handlers = this.#handlers;
    if (handlers === undefined) {
      this.#early.push(() => this.#onRead(chunk));
      return;
    }
    if (this.#closed) return;
    // Returned true: nothing refers to the chunk, so the next read goes into its bytes.
    if (handlers.onData(chunk) === true) this.#regions.release(chunk);
  }

  #emit(event: () => void): void {
    if (this.#handlers === undefined) this.#early.push(event);
    else if (!this.#closed) event();
  }

  #fireClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers!.onClose(this.#error);
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
      // Paused: nothing is read before the socket is rebuilt to read through onread.
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) => {
        const reads = NodeConnection.reads();
        const socket = reads.onread === undefined ? accepted : withOnRead(accepted, server, reads.onread);
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
      const reads = NodeConnection.reads();
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
