/**
 * The Bun adapter: Bun's native TCP API (`Bun.listen`, `Bun.connect`) mapped
 * onto the {@link Transport} interface. Not `node:net`, which Bun emulates
 * with more layers in between.
 *
 * Bun's quirks handled here (observed on Bun 1.4.5):
 *
 * - **Shared handlers.** One handler object serves every socket of a listener
 *   (and one serves every outgoing connection); the per-socket state, a
 *   `BunConnection`, lives in `socket.data`, set in `open`.
 * - **Partial writes are not buffered.** `socket.write` returns how many bytes
 *   it took (`0` when the kernel buffer is full, `-1` once closed) and drops the
 *   rest. The adapter keeps the untaken rest in a {@link WriteQueue} and
 *   resends it from the `drain` handler, in order, before anything written
 *   later; while a backlog exists new buffers only join the queue (no
 *   `socket.write` call each), and runs of small ones are merged into one
 *   write on drain. Bun also fires `drain` when nothing was pending (right
 *   after `end`, for one), so `onDrain` fires only when a backlog reported by
 *   `write` has emptied.
 * - **Received chunks are fresh, and asked for as plain `Uint8Array`s.** Each
 *   `data` call brings new memory, never reused, so a chunk over 128 KiB is
 *   handed on without a copy (smaller ones: next two points). With
 *   `binaryType: "uint8array"` JavaScriptCore keeps the bytes without an
 *   `ArrayBuffer` object until something asks for one; the copies below read
 *   the bytes and never ask. (With `"arraybuffer"`, the choice before chunks
 *   were copied, Bun builds that object for every chunk, and the copy needed a
 *   view of it too; docs/performance.md#bun has the figures.)
 * - **Chunks are copied into memory all connections share.** A chunk of up
 *   to 128 KiB is copied into a region of one slab that every connection of
 *   the thread uses (`ByteSlab`); once `onData` returns `true` (nothing refers
 *   to it), the next chunk, of any connection, is copied into the same bytes,
 *   and gets the same view when it has the same size. So the decoder can give
 *   frames at the same places the same body objects again instead of cutting
 *   a view per frame (`reuseViews`), as on Node and Deno, and the bytes stay
 *   in the caches, where one buffer per connection did not
 *   (docs/performance.md#bun). A chunk the receiver keeps (an async
 *   handler's body) keeps its region; the next chunk goes after it, and the
 *   garbage collector frees the slab once none of its regions is referenced.
 *   An idle connection holds no read memory of its own. Larger chunks are
 *   handed on as they came.
 * - **Half-close.** Sockets are created with `allowHalfOpen` (otherwise Bun
 *   closes both ways on the peer's FIN). `socket.end()` closes the whole socket
 *   (the close handler runs inside the call), so `end()` here uses
 *   `socket.shutdown()`, which sends FIN and keeps reading; it is deferred until
 *   the backlog is written. The side that sent FIN first gets no `end` handler
 *   call when the peer's FIN arrives, only `close` (after the last `data`), so
 *   `onEnd` is synthesised before `onClose` in that case.
 * - **Abort.** `socket.terminate()` resets the connection (the peer sees
 *   `ECONNRESET` even with nothing unread), whereas Node's `destroy()` and
 *   Deno's `close()` send FIN. `abort()` therefore uses `socket.close()`, which
 *   closes the descriptor at once like those: the peer sees FIN, or a reset if
 *   data was left unread.
 * - **Synchronous close.** `socket.close()` runs the close handler before
 *   returning; `onClose` is always delivered from a microtask, so it never runs
 *   inside a call to `abort()`, `write()` or `end()`.
 * - **Errors.** A reset arrives as the close handler's `error` argument (with
 *   `code`), not through the error handler. An exception thrown inside a Bun
 *   handler goes to Bun's error handler and the socket stays open, so the
 *   adapter catches the caller's exceptions itself: one thrown by `onData`,
 *   `onEnd` or `onDrain` closes its connection with that error (as the Deno
 *   adapter does); one thrown by `onClose` or `onConnection` is rethrown from a
 *   microtask (an uncaught exception, as on Node). Only socket errors reach
 *   Bun's error handler; the socket is then closed with that error.
 * - **Binding.** `Bun.listen` throws synchronously (with `code`), mapped to a
 *   rejection; `exclusive` keeps `SO_REUSEPORT` off so a port in use is
 *   reported. `stop(false)` stops accepting and keeps open sockets. Bun gives
 *   JavaScript no accept failures: out of descriptors, pending connections
 *   stay queued and are accepted once descriptors are free. A connection
 *   reset before it was accepted is opened with no peer address: it is
 *   closed and reported to `onAcceptError` as `ENOTCONN`, as Deno's
 *   `accept()` reports the same case (`_accept_failure.ts`), and never
 *   becomes a connection.
 *
 * @module
 */

import process from "node:process";
import type { BunApi, BunSocket, BunSocketHandler, BunTcpListener } from "./_bun_types.ts";
import { peerGoneError } from "./_accept_failure.ts";
import {
  CLOSE,
  CLOSED,
  type CloseState,
  type CloseStep,
  END_CALLED,
  FIN_OUT,
  FIN_SENT,
  nextState,
  OPEN,
  PEER_ENDED,
  PEER_FIN,
} from "./_close_sequence.ts";
import { ByteSlab } from "../_byte_slab.ts";
import { EarlyEvents } from "./_early_events.ts";
import { runtimeGlobal } from "./_runtime_global.ts";
import { socketAddress } from "./_socket_address.ts";
import { asError, errorCode, rethrowAsync, socketError, type SocketError, withCode } from "./_socket_error.ts";
import { WriteQueue } from "./_write_queue.ts";
import type {
  Connection,
  ConnectionHandlers,
  ConnectOptions,
  Listener,
  ListenOptions,
  SocketAddress,
  Transport,
  WorkerSupport,
} from "./types.ts";

const Bun = runtimeGlobal<BunApi>("Bun");

type Socket = BunSocket<BunConnection | undefined>;

/**
 * Chunks up to this size are copied into the memory connections share (see
 * the module doc). It covers deep pipelines of 4 KiB frames: a window of 8 or
 * 16 arrives as one chunk of 32,800 or 65,600 bytes, just over 32 or 64 KiB.
 * Copied, their frames get reused body objects, which saves more than the
 * copy costs; a window of 32 (131,200-byte chunks) stays over the limit,
 * where copying made no difference (docs/performance.md#bun).
 */
const COPY_MAX = 128 * 1024;

/** The memory this thread's connections copy their chunks into (see the module doc). */
const readCopies = new ByteSlab(2 * COPY_MAX, COPY_MAX);

class BunConnection implements Connection {
  readonly remote: SocketAddress;
  readonly #socket: Socket;
  /** The listener's host, for a socket that does not know its own. */
  readonly #localHost: string;
  /** This end's address, made when first asked for (servers seldom ask). */
  #local: SocketAddress | undefined;
  #handlers: ConnectionHandlers | undefined;
  /** Events before `start()`: data, end, drain, the close (made on the first). */
  #early: EarlyEvents | undefined;
  /** How far it has closed (`_close_sequence.ts`). */
  #state: CloseState = OPEN;
  /** What `onClose` reports: an error from Bun, or what a handler threw. */
  #closeError: SocketError | undefined;
  /** Bytes not yet taken by Bun. */
  readonly #queue = new WriteQueue();

  constructor(socket: Socket, localHost: string) {
    this.#socket = socket;
    this.remote = socketAddress(socket.remoteAddress, socket.remotePort);
    this.#localHost = localHost;
    socket.setNoDelay(true);
  }

  get local(): SocketAddress {
    return (this.#local ??= socketAddress(this.#socket.localAddress || this.#localHost, this.#socket.localPort));
  }

  /**
   * Bun's handlers, one object per listener (or for all outgoing connections),
   * dispatching to the connection kept in `socket.data`.
   */
  static handlers(onOpen: (socket: Socket) => void): BunSocketHandler<BunConnection | undefined> {
    return {
      open: onOpen,
      binaryType: "uint8array",
      data(socket, bytes) {
        const connection = socket.data;
        if (connection !== undefined) connection.#onData(bytes);
      },
      drain(socket) {
        const connection = socket.data;
        if (connection !== undefined) connection.#flush();
      },
      end(socket) {
        const connection = socket.data;
        if (connection !== undefined && connection.#move(PEER_FIN)) connection.#emit("onEnd");
      },
      close(socket, error) {
        const connection = socket.data;
        if (connection !== undefined) connection.#onBunClose(error);
      },
      error(socket, error) {
        const connection = socket.data;
        if (connection !== undefined) connection.#onBunError(error);
      },
    };
  }

  start(handlers: ConnectionHandlers): void {
    if (this.#handlers) throw new Error("Cannot start a connection twice");
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = undefined;
    early?.replay(() => this.#state === CLOSED, (error) => this.#fail(asError(error)));
  }

  get backlog(): number {
    return this.#queue.backlog;
  }

  write(bytes: Uint8Array): boolean {
    // Ending or closed: a no-op.
    if (this.#state > PEER_ENDED) return false;
    const queue = this.#queue;
    if (queue.backlog > 0) {
      // Behind the backlog: written on drain.
      queue.push(bytes);
      return false;
    }
    const length = bytes.length;
    if (length === 0) return true;
    const taken = this.#socket.write(bytes);
    if (taken === length) return true;
    // -1: the socket is closed; its close handler runs (or ran) and settles everything.
    if (taken < 0 || this.#state === CLOSED) return false;
    queue.push(taken === 0 ? bytes : bytes.subarray(taken));
    return false;
  }

  end(): void {
    if (this.#move(END_CALLED) && this.#queue.backlog === 0) this.#sendPendingFin();
  }

  abort(): void {
    if (this.#state === CLOSED) return;
    this.#close(undefined, false);
    // Runs Bun's close handler before returning; everything is settled already.
    this.#socket.close();
  }

  pause(): void {
    if (this.#state !== CLOSED) this.#socket.pause();
  }

  resume(): void {
    if (this.#state !== CLOSED) this.#socket.resume();
  }

  setNoDelay(noDelay: boolean): void {
    if (this.#state !== CLOSED) this.#socket.setNoDelay(noDelay);
  }

  /**
   * Take `step` in the close sequence: `false` when it changes nothing. Bun
   * closes the socket itself once both FINs are out (`ENDED`), and reports
   * that with its close handler, which closes this connection.
   */
  #move(step: CloseStep): boolean {
    const state = this.#state;
    const next = nextState(state, step);
    if (next === state) return false;
    this.#state = next;
    return true;
  }

  #onData(bytes: Uint8Array): void {
    if (this.#state === CLOSED) return;
    const handlers = this.#handlers;
    if (handlers === undefined) {
      // Handed on as it came (see the module doc), at start().
      (this.#early ??= new EarlyEvents()).add(() => this.#handlers!.onData(bytes));
      return;
    }
    if (bytes.length > COPY_MAX) {
      // Handed on as it came (see the module doc).
      this.#emitData(handlers, bytes);
      return;
    }
    const chunk = readCopies.take(bytes.length);
    chunk.set(bytes);
    // Returned true: nothing refers to the chunk, so the next one may be copied over it.
    if (this.#emitData(handlers, chunk)) readCopies.reclaim(chunk);
  }

  /** @returns `true` when `onData` did (nothing refers to the chunk any more). */
  #emitData(handlers: ConnectionHandlers, chunk: Uint8Array): boolean {
    try {
      return handlers.onData(chunk) === true;
    } catch (error) {
      this.#fail(asError(error));
      return false;
    }
  }

  /** Deliver `onEnd` or `onDrain`, or keep it for `start()`; a handler that throws closes the connection. */
  #emit(event: "onEnd" | "onDrain"): void {
    const handlers = this.#handlers;
    if (handlers === undefined) {
      (this.#early ??= new EarlyEvents()).add(() => this.#handlers![event]());
      return;
    }
    try {
      handlers[event]();
    } catch (error) {
      this.#fail(asError(error));
    }
  }

  /** A handler threw: close the connection with that error. */
  #fail(error: Error): void {
    if (this.#state !== CLOSED) {
      this.#close(error, false);
      this.#socket.close();
    } else if (this.#closeError === undefined) {
      // Closed already, onClose still to come (the handler aborted, or the close waits for start()): it reports this error.
      this.#closeError = error;
    } else {
      rethrowAsync(error);
    }
  }

  /** Hand the backlog to Bun (on `drain`), then send a pending FIN and report the drain. */
  #flush(): void {
    if (this.#state === CLOSED) return;
    const queue = this.#queue;
    for (let chunk = queue.next(); chunk !== undefined; chunk = queue.next()) {
      const taken = this.#socket.write(chunk);
      if (this.#state === CLOSED) return;
      queue.advance(taken);
      if (taken < chunk.length) return; // Bun calls drain again once the socket takes more.
    }
    this.#sendPendingFin();
    if (queue.takeDrain() && this.#state !== CLOSED) this.#emit("onDrain");
  }

  /** Send the FIN that waits for the backlog, if one does (the backlog is written). */
  #sendPendingFin(): void {
    if (this.#move(FIN_OUT)) this.#socket.shutdown();
  }

  #onBunError(error: Error): void {
    // Only socket errors get here: what the caller's handlers throw is caught
    // around each call (`#emitData`, `#emit`, the replay, `onClose`, `onConnection`).
    if (this.#state === CLOSED) return;
    this.#closeError ??= withCode(error);
    this.#socket.close();
  }

  #onBunClose(error: Error | undefined): void {
    if (this.#state === CLOSED) return;
    const failure = error !== undefined ? withCode(error) : this.#closeError;
    // After our FIN, Bun reports the peer's FIN only as this close: report it as end first.
    this.#close(failure, failure === undefined && this.#state === FIN_SENT);
  }

  /**
   * Close (the state is not `CLOSED` yet): drop the backlog and queue `onClose`
   * (after a synthesised `onEnd`) for a microtask, or keep it for `start()`.
   */
  #close(error: SocketError | undefined, withEnd: boolean): void {
    this.#move(CLOSE);
    this.#queue.clear();
    this.#closeError = error;
    if (this.#handlers !== undefined) {
      queueMicrotask(() => this.#report(withEnd));
      return;
    }
    if (withEnd) (this.#early ??= new EarlyEvents()).add(() => this.#handlers!.onEnd());
    (this.#early ??= new EarlyEvents()).addClose(() => this.#report(false));
  }

  /** Deliver the close, after `onEnd` when Bun reported the peer's FIN only as the close. */
  #report(withEnd: boolean): void {
    const handlers = this.#handlers!;
    if (withEnd) {
      try {
        handlers.onEnd();
      } catch (error) {
        rethrowAsync(error);
      }
    }
    try {
      handlers.onClose(this.#closeError);
    } catch (error) {
      rethrowAsync(error);
    }
  }
}

class BunListener implements Listener {
  readonly address: SocketAddress;
  readonly #server: BunTcpListener;
  #closing: Promise<void> | undefined;

  constructor(server: BunTcpListener, host: string) {
    this.#server = server;
    const bound: { address?: string; port?: number } = {};
    try {
      server.getsockname?.(bound);
    } catch {
      // Older Bun: fall back to the host asked for.
    }
    this.address = socketAddress(bound.address || host, server.port);
  }

  close(): Promise<void> {
    if (this.#closing === undefined) {
      // false: stop accepting, keep the open connections.
      this.#server.stop(false);
      this.#closing = Promise.resolve();
    }
    return this.#closing;
  }
}

/** Handlers shared by every outgoing connection. */
const connectHandlers = BunConnection.handlers((socket) => {
  socket.data = new BunConnection(socket, "");
  // A client may ask for its own address after the close, when the socket no longer knows it.
  void socket.data.local;
});

/**
 * The Bun transport, on Bun's native TCP API. Loading this module on another
 * runtime throws.
 *
 * @example
 * ```ts ignore
 * import { bunTransport } from "./src/transport/bun.ts";
 * const listener = await bunTransport.listen({ host: "127.0.0.1", port: 0 }, (c) => c.abort());
 * await listener.close();
 * ```
 */
export const bunTransport: Transport = {
  runtime: "bun",

  listen(options: ListenOptions, onConnection: (connection: Connection) => void): Promise<Listener> {
    const { host, port } = options;
    let localHost = host;
    const handlers = BunConnection.handlers((socket) => {
      if (!socket.remoteAddress) {
        // Reset before it was opened (no peer address): what Deno's accept() rejects with ENOTCONN.
        socket.close();
        try {
          options.onAcceptError?.(peerGoneError(host, port));
        } catch (error) {
          rethrowAsync(error);
        }
        return;
      }
      const connection = new BunConnection(socket, localHost);
      socket.data = connection;
      try {
        onConnection(connection);
      } catch (error) {
        rethrowAsync(error);
      }
    });
    let server: BunTcpListener;
    try {
      server = Bun.listen<BunConnection | undefined>({
        hostname: host,
        port,
        allowHalfOpen: true,
        exclusive: options.reusePort !== true,
        reusePort: options.reusePort === true,
        socket: handlers,
      });
    } catch (error) {
      return Promise.reject(socketError("listen on", host, port, errorCode(error), error));
    }
    const listener = new BunListener(server, host);
    localHost = listener.address.host;
    return Promise.resolve(listener);
  },

  workerSupport(): WorkerSupport {
    // Elsewhere SO_REUSEPORT either does not exist or does not balance (macOS
    // hands every connection to one listener).
    if (process.platform !== "linux") return { problem: `Bun balances a shared port (reusePort) only on Linux, not on ${process.platform}` };
    return { mode: "reuse-port" };
  },

  async connect(options: ConnectOptions): Promise<Connection> {
    const { host, port } = options;
    let socket: Socket;
    try {
      socket = await Bun.connect<BunConnection | undefined>({
        hostname: host,
        port,
        allowHalfOpen: true,
        socket: connectHandlers,
      });
    } catch (error) {
      throw socketError("connect to", host, port, errorCode(error), error);
    }
    return socket.data ?? (socket.data = new BunConnection(socket, ""));
  },
};
