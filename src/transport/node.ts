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
 * `true`. That spares every chunk an allocation and the stream's machinery,
 * which cost a raw echo more than the echo itself (docs/performance.md#node).
 * Outgoing connections pass `onread` to `net.connect`.
 * `net.Server` has no such option, so an accepted socket (created paused with
 * `pauseOnConnect`, before anything is read) hands its handle to a new
 * `net.Socket` built with `onread`, as Node's own `onconnection` builds it,
 * and the server's connection count follows the new socket (`_handle`, the
 * `handle` option and `_server` are Node internals, the ones Node's own
 * `onconnection` uses; checked on Node 20, and covered by the transport tests
 * on whichever Node runs them).
 *
 * **Writes go straight to the socket's handle.** `socket.write` passes every
 * buffer through the writable stream's machinery (`writeOrBuffer`, `_write`,
 * callbacks) before libuv writes it; on Node itself the adapter hands the
 * buffer to the handle's `writeBuffer`, as that machinery ends up doing, with
 * a `WriteWrap` request from Node's `stream_wrap` binding (one kept for the
 * next write while libuv completes them at once)
 * (`process.binding`, deprecated but kept for such uses; not taken when
 * `--pending-deprecation` would warn about it), which saves server CPU per
 * frame, most on small frames (docs/performance.md#node). A
 * write libuv completes at once leaves nothing behind (`backlog` stays 0);
 * one it queues keeps its buffer in the backlog until libuv reports it done,
 * `write` returns `false` and `onDrain` follows, as on Deno. libuv writes the
 * queued requests in order, and `end()` (the stream's shutdown) waits for
 * them. Elsewhere (Bun's and Deno's `node:net`) writes use `socket.write`.
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
import { getSystemErrorName } from "node:util";
import { MIN_READ, ReadRegions } from "./_read_regions.ts";
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

/**
 * What every socket reads into until its first read: Node takes a read
 * buffer from `onread.buffer()` when it makes a socket, so a buffer of its
 * own would cost an idle connection 4 KiB. libuv reads one socket at a time
 * and calls back at once, and the callback copies the bytes out before
 * returning, so one buffer serves them all. It is no larger than a fresh
 * {@link ReadRegions}' first region, which the copy goes into.
 */
const FIRST_READ = new Uint8Array(MIN_READ);

/** A write request of Node's `stream_wrap` binding, as `node:net` fills it in. */
interface WriteRequest {
  handle: StreamHandle;
  oncomplete: (this: WriteRequest, status: number) => void;
  /** Kept alive while libuv writes it (the native side holds only a pointer). */
  buffer: Uint8Array | null;
  bytes: number;
  connection: NodeConnection;
}

/** The part of a socket's libuv stream handle used for writing. */
interface StreamHandle {
  /** @returns 0, or a negative libuv error code. */
  writeBuffer(request: WriteRequest, bytes: Uint8Array): number;
}

/** Node's `stream_wrap` binding: write requests, and whether the last write was queued. */
interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/**
 * The binding for writes straight to a handle (see the module doc), on Node
 * itself; `undefined` elsewhere, or where asking for it would print a
 * deprecation warning.
 */
function streamWrapBinding(): StreamWrapBinding | undefined {
  if (!READS_VIA_ONREAD) return undefined;
  const options = `${process.execArgv.join(" ")} ${process.env.NODE_OPTIONS ?? ""}`;
  if (options.includes("--pending-deprecation") || process.env.NODE_PENDING_DEPRECATION === "1") return undefined;
  try {
    const binding = (process as unknown as { binding?: (name: string) => Partial<StreamWrapBinding> }).binding?.("stream_wrap");
    if (
      typeof binding?.WriteWrap === "function" && binding.streamBaseState instanceof Int32Array &&
      typeof binding.kLastWriteWasAsync === "number"
    ) {
      return binding as StreamWrapBinding;
    }
  } catch {
    // Not offered by this Node: socket.write it is.
  }
  return undefined;
}

const STREAM_WRAP = streamWrapBinding();

/** A libuv write error as `node:net` reports one (`write EPIPE`, with `code`, `errno`, `syscall`). */
function writeError(status: number): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  return Object.assign(new Error(`write ${code}`), { code, errno: status, syscall: "write" });
}

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
  /** The socket's handle, when writes go straight to it (see the module doc). */
  readonly #handle: StreamHandle | undefined;
  /** Bytes of direct writes libuv has not finished. */
  #pending = 0;
  /** A direct write was queued: `onDrain` fires once `#pending` is 0. */
  #wantDrain = false;
  /**
   * The request of the last direct write, which libuv completed at once: Node
   * binds a request to its native write only when libuv queues the write, so
   * one that was never bound serves the next write too (see `write`).
   */
  #spareRequest: WriteRequest | undefined;

  /**
   * Reads for a socket about to be created, into regions of its own once it
   * has read: until then into {@link FIRST_READ}, which every socket shares.
   */
  static reads(): SocketReads {
    const regions = new ReadRegions();
    let hasRead = false;
    const reads: SocketReads = {
      regions,
      connection: undefined,
      onread: READS_VIA_ONREAD
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
    const handle = (socket as unknown as { _handle: Partial<StreamHandle> | null })._handle;
    this.#handle = STREAM_WRAP !== undefined && typeof handle?.writeBuffer === "function" ? handle as StreamHandle : undefined;
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
    if (this.#closed) return 0;
    // Direct writes never go through the stream, whose length is then always 0.
    return this.#handle !== undefined ? this.#pending : this.#socket.writableLength;
  }

  write(bytes: Uint8Array): boolean {
    if (this.#closed || this.#ended || this.#socket.destroyed) return false;
    const handle = this.#handle;
    if (handle === undefined) return this.#socket.write(bytes);
    if (bytes.length === 0) return this.#pending === 0;
    const binding = STREAM_WRAP!;
    // A write libuv completes at once (the usual case) leaves its request
    // untouched (Node's StreamBase::Write returns before binding it), so it is
    // kept for the next rather than allocated anew (docs/performance.md#node).
    let request = this.#spareRequest;
    this.#spareRequest = undefined;
    if (request === undefined) {
      request = new binding.WriteWrap();
      request.handle = handle;
      request.oncomplete = NodeConnection.#onWritten;
      request.connection = this;
      request.buffer = null;
      request.bytes = 0;
    }
    const status = handle.writeBuffer(request, bytes);
    if (status !== 0) {
      this.#socket.destroy(writeError(status));
      return false;
    }
    if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0) {
      this.#spareRequest = request;
      return this.#pending === 0;
    }
    // Queued by libuv: keep the bytes until it is done with them.
    request.buffer = bytes;
    request.bytes = bytes.length;
    this.#pending += bytes.length;
    this.#wantDrain = true;
    return false;
  }

  /** libuv finished a queued direct write (`this` is its request). */
  static #onWritten(this: WriteRequest, status: number): void {
    const connection = this.connection;
    this.buffer = null;
    connection.#pending -= this.bytes;
    if (connection.#closed || connection.#socket.destroyed) return;
    if (status < 0) {
      connection.#socket.destroy(writeError(status));
      return;
    }
    // As the writable stream does: no drain once end() was called.
    if (connection.#pending === 0 && connection.#wantDrain && !connection.#ended) {
      connection.#wantDrain = false;
      connection.#emit(() => connection.#handlers!.onDrain());
    }
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
        if (accepted.remoteAddress === undefined) {
          // Reset before we got to it (getpeername fails): what Deno's accept() rejects with ENOTCONN.
          accepted.destroy();
          options.onAcceptError?.(peerGoneError(host, port));
          return;
        }
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
