/**
 * The Deno adapter: `Deno.listen`, `Deno.connect` and `Deno.Conn` mapped onto
 * the {@link Transport} interface.
 *
 * Deno's quirks handled here:
 *
 * - **Reads are pulled, not pushed.** `conn.read(buffer)` resolves with fewer
 *   bytes than asked for, or `null` at the peer's FIN, so each connection runs
 *   one read loop, started by `start()` (nothing is read before, so nothing is
 *   lost). `null` becomes `onEnd`, once; the loop then stops.
 * - **The caller supplies the read buffer, and owns what it gets.** Each
 *   connection reads into slabs of its own (`_read_regions.ts`, shared with
 *   the Node adapter): a region is never read into twice unless `onData`
 *   returned `true`, and the read size adapts between 4 KiB and 64 KiB. A
 *   chunk is a view: use it, never `chunk.buffer` as a whole.
 * - **An accepted connection reads after it writes.** When `onData` returns
 *   with a write in progress (the replies to the chunk), the next read waits
 *   until that write is done, as a raw echo's read/write loop does: a read
 *   issued while a write is in flight costs more server CPU per frame
 *   (docs/performance.md#deno). A server whose write cannot finish (its peer
 *   reads nothing) thus stops reading at once rather than after a session's
 *   `highWaterMark` of further replies; a peer that reads its replies is
 *   never held up. Outgoing (client) connections go on reading while they
 *   write: a client that waited could deadlock with a server waiting for it.
 *   What an accepted connection's `onData` writes is sent by the read loop
 *   itself once `onData` returns (the writer loop below takes over only if
 *   more is queued by the time that write is done): one async function call
 *   and two promises fewer per chunk (docs/performance.md#deno). So an
 *   `abort()` in `onData` discards what `onData` wrote, as it does any
 *   backlog.
 * - **There is no pause.** `pause()` stops issuing reads; a read already
 *   pending when it is called keeps its bytes (or the FIN) until `resume()`.
 * - **Closing rejects what is pending.** A read, write or `closeWrite` pending
 *   when the connection is closed rejects (`Interrupted`, `BadResource`); that
 *   is a normal close, not an error. A `ConnectionReset` or `BrokenPipe` closes
 *   the connection with an error whose `code` is `ECONNRESET` or `EPIPE`.
 * - **Writes are async and may be partial.** `conn.write` resolves with how
 *   much it took; one writer loop per connection sends the buffers accepted by
 *   `write` in order, each until it is all gone, merging runs of small queued
 *   ones into one write ({@link WriteQueue}). `write` returns `false` while
 *   that backlog is not empty, and `onDrain` fires once it is.
 * - **Half-close is explicit.** `end()` waits for the backlog, then calls
 *   `conn.closeWrite()`; the Deno connection is closed once that is done and the
 *   peer's FIN has been read.
 * - **Permissions prompt.** Without `--allow-net`, `Deno.listen` and
 *   `Deno.connect` would prompt on a terminal or throw `NotCapable`; the
 *   permission is queried first (`Deno.permissions.querySync`, which never
 *   prompts) and a missing one is reported as an error with `code` `EPERM`.
 * - **Closing sends FIN, then maybe a reset.** Closing a Deno connection shuts
 *   its sending side down first, so a peer that `abort()`s with unread bytes is
 *   seen as end (FIN) and only later, when writing, as `EPIPE`/`ECONNRESET`.
 * - **Errors are classes first.** `AddrInUse`, `ConnectionRefused`, ... (with a
 *   `code` only on recent Deno) become errors with `code` and a message naming
 *   host:port (`socketError`).
 * - **Accepting ends with a rejection.** Closing a listener rejects the pending
 *   `accept()` with `BadResource`; that ends the accept loop quietly. Other
 *   accept failures go to `onAcceptError`. A peer that reset its connection
 *   before the accept makes `accept()` reject with `NotConnected` (Deno reads
 *   the peer's address while accepting): accepting goes on at once, as after
 *   any failure `_accept_failure.ts` calls `peer-gone`; after any other
 *   (out of descriptors, say) it resumes after 50 ms.
 *
 * Every loop catches its own errors: no promise rejection goes unhandled. An
 * exception thrown by a handler (`onData`, `onEnd`, `onDrain`) closes its
 * connection with that error; one thrown by `onClose` or `onConnection` is
 * rethrown asynchronously (an uncaught exception, as on Node).
 *
 * @module
 */

import type { DenoApi, DenoConn, DenoListener, DenoNetAddr } from "./_deno_types.ts";
import { acceptFailureKind } from "./_accept_failure.ts";
import {
  CLOSE,
  CLOSED,
  type CloseState,
  type CloseStep,
  END_CALLED,
  ENDED,
  ENDING,
  ENDING_AFTER_PEER,
  FIN_OUT,
  nextState,
  OPEN,
  PEER_ENDED,
  PEER_FIN,
} from "./_close_sequence.ts";
import { EarlyEvents } from "./_early_events.ts";
import { runtimeGlobal } from "./_runtime_global.ts";
import { ReadRegions } from "./_read_regions.ts";
import { formatHostPort, socketAddress } from "./_socket_address.ts";
import { asError, errorCode, rethrowAsync, type SocketError, socketError } from "./_socket_error.ts";
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

const deno = runtimeGlobal<DenoApi>("Deno");

/** Pause before accepting again after an accept failure. */
const ACCEPT_RETRY_MS = 50;

function errorName(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const name = (error as { name?: unknown }).name;
  return typeof name === "string" ? name : undefined;
}

/** Whether `error` is what a pending operation rejects with when its resource is closed. */
function isClosedError(error: unknown): boolean {
  const name = errorName(error);
  return name === "Interrupted" || name === "BadResource";
}

/** Whether `error` is Deno's permission system refusing (not the OS refusing with EACCES). */
function isPermissionError(error: unknown): boolean {
  const name = errorName(error);
  if (name === "NotCapable") return true;
  if (name !== "PermissionDenied") return false;
  // Deno before 2 threw PermissionDenied for its own permissions too; the OS's EACCES has a code.
  const code = (error as { code?: unknown }).code;
  return code !== "EACCES" || /--allow-net|requires net access/i.test((error as Error).message ?? "");
}

function permissionError(action: string, host: string, port: number, cause: unknown): SocketError {
  const error: SocketError = new Error(
    `Cannot ${action} ${formatHostPort(host, port)}: Deno lacks the net permission; run with --allow-net`,
    { cause },
  );
  error.name = "SocketError";
  error.code = "EPERM";
  return error;
}

/** The error reported when `action` (listen on, connect to) failed at host:port. */
function operationError(action: string, host: string, port: number, error: unknown): SocketError {
  if (isPermissionError(error)) return permissionError(action, host, port, error);
  return socketError(action, host, port, errorCode(error), error);
}

/** Fail with `EPERM` unless the net permission for host:port is granted (never prompts). */
function checkNetPermission(action: string, host: string, port: number): void {
  const permissions = deno.permissions;
  if (typeof permissions?.querySync !== "function") return;
  let state: string;
  try {
    state = permissions.querySync({ name: "net", host: formatHostPort(host, port) }).state;
  } catch {
    return; // A host Deno cannot parse: let listen or connect report it.
  }
  if (state !== "granted") throw permissionError(action, host, port, new Error(`The net permission is "${state}"`));
}

function addressOf(address: DenoNetAddr): SocketAddress {
  return socketAddress(address.hostname, address.port);
}

class DenoConnection implements Connection {
  readonly remote: SocketAddress;
  /** This end's address, made when first asked for (servers seldom ask). */
  #local: SocketAddress | undefined;
  readonly #conn: DenoConn;
  #handlers: ConnectionHandlers | undefined;
  /** Events before `start()`: a drain, the close (made on the first). */
  #early: EarlyEvents | undefined;
  /** How far it has closed (`_close_sequence.ts`). */
  #state: CloseState = OPEN;
  #closeError: SocketError | undefined;
  /** Closes the connection when one of its loops fails unexpectedly. */
  readonly #onLoopError = (error: unknown): void => this.#close(asError(error));

  // Reading.
  readonly #regions = new ReadRegions();
  #paused = false;
  /** Resolves the promise the read loop waits on while paused. */
  #wake: (() => void) | undefined;

  // Writing.
  /** Buffers accepted by write(), not yet written. */
  readonly #queue = new WriteQueue();
  /** A write is in flight (the writer loop runs, or the read loop sends what `onData` wrote). */
  #writing = false;
  /** Accepted (server side): the read loop waits for the write in progress before reading on. */
  readonly #readsAfterWrites: boolean;
  /** Settles when the write loop in progress has written everything. */
  #written: Promise<void> | undefined;
  /** The read loop is in `onData` (accepted connections): a write started there is sent by the read loop. */
  #inRead = false;
  /** A write was started inside `onData`: the read loop sends it once `onData` returns. */
  #writeDeferred = false;

  /**
   * @param conn The Deno connection.
   * @param readsAfterWrites Wait for the write in progress before each read
   * (accepted connections; see the module doc).
   */
  constructor(conn: DenoConn, readsAfterWrites: boolean) {
    this.#conn = conn;
    this.#readsAfterWrites = readsAfterWrites;
    this.remote = addressOf(conn.remoteAddr);
    try {
      conn.setNoDelay(true);
    } catch {
      // Already closed by the peer: the first read or write reports it.
    }
  }

  get local(): SocketAddress {
    return (this.#local ??= addressOf(this.#conn.localAddr));
  }

  start(handlers: ConnectionHandlers): void {
    if (this.#handlers) throw new Error("Cannot start a connection twice");
    this.#handlers = handlers;
    const early = this.#early;
    this.#early = undefined;
    early?.replay(() => this.#state === CLOSED, (error) => {
      // Closed before start(): the close, kept for now, reports the error.
      if (this.#state === CLOSED) this.#closeError ??= asError(error);
      else this.#close(asError(error));
    });
    if (this.#state !== CLOSED) this.#readLoop().catch(this.#onLoopError);
  }

  get backlog(): number {
    return this.#queue.backlog;
  }

  write(bytes: Uint8Array): boolean {
    // Ending or closed: a no-op.
    if (this.#state > PEER_ENDED) return false;
    if (bytes.length > 0) {
      this.#queue.push(bytes);
      if (!this.#writing) {
        this.#writing = true;
        if (this.#inRead) this.#writeDeferred = true;
        else this.#written = this.#writeLoop().catch(this.#onLoopError);
      }
    }
    return this.#queue.backlog === 0;
  }

  end(): void {
    if (this.#move(END_CALLED) && !this.#writing) this.#shutdown().catch(this.#onLoopError);
  }

  abort(): void {
    this.#close(undefined);
  }

  pause(): void {
    if (this.#state !== CLOSED) this.#paused = true;
  }

  resume(): void {
    if (this.#state === CLOSED || !this.#paused) return;
    this.#paused = false;
    this.#wakeReader();
  }

  setNoDelay(noDelay: boolean): void {
    if (this.#state === CLOSED) return;
    try {
      this.#conn.setNoDelay(noDelay);
    } catch {
      // Closed underneath: the read or write loop reports it.
    }
  }

  /**
   * Take `step` in the close sequence: `false` when it changes nothing. Both
   * FINs (`ENDED`) close the connection; reaching `CLOSED` closes the Deno
   * connection, once, whatever the path.
   */
  #move(step: CloseStep, error?: SocketError): boolean {
    const state = this.#state;
    const next = nextState(state, step);
    if (next === state) return false;
    this.#state = next;
    if (next === ENDED) this.#move(CLOSE);
    else if (next === CLOSED) this.#enterClosed(error);
    return true;
  }

  async #readLoop(): Promise<void> {
    const conn = this.#conn;
    while (this.#state !== CLOSED) {
      if (this.#paused) {
        await this.#resumed();
        continue;
      }
      const regions = this.#regions;
      const region = regions.take();
      let read: number | null;
      try {
        read = await conn.read(region);
      } catch (error) {
        regions.release(region);
        this.#readFailed(error);
        return;
      }
      if (read === null || read === 0) {
        regions.release(region);
        // A FIN read while paused waits, like data, for resume().
        while (this.#paused && this.#state !== CLOSED) await this.#resumed();
        if (this.#state !== CLOSED) this.#deliverEnd();
        return;
      }
      const chunk = regions.filled(region, read);
      // Bytes read while paused are kept until resume().
      while (this.#paused && this.#state !== CLOSED) await this.#resumed();
      if (this.#state === CLOSED) return;
      this.#inRead = this.#readsAfterWrites;
      try {
        // Returned true: nothing refers to the chunk, so the next read reuses its bytes.
        if (this.#handlers!.onData(chunk) === true) regions.release(chunk);
      } catch (error) {
        this.#close(asError(error));
      }
      this.#inRead = false;
      // An accepted connection reads again once its replies are written (see the module doc).
      if (this.#writeDeferred) {
        // The replies to this chunk: written from here, without a write loop of their own.
        this.#writeDeferred = false;
        if (this.#state === CLOSED) return;
        let written: number;
        try {
          written = await conn.write(this.#queue.next()!);
        } catch (error) {
          this.#writeFailed(error);
          return;
        }
        if (!this.#wrote(written)) return;
        if (this.#queue.backlog > 0) {
          this.#written = this.#writeLoop().catch(this.#onLoopError);
          await this.#written;
        } else {
          const shutdown = this.#writesDone();
          if (shutdown !== undefined) await shutdown;
        }
      } else if (this.#readsAfterWrites && this.#writing) await this.#written;
    }
  }

  #resumed(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #wakeReader(): void {
    const wake = this.#wake;
    if (wake) {
      this.#wake = undefined;
      wake();
    }
  }

  #readFailed(error: unknown): void {
    if (this.#state === CLOSED) return; // We closed it: the pending read was cancelled.
    if (isClosedError(error)) this.#close(undefined);
    else this.#close(this.#ioError("read from", error));
  }

  #deliverEnd(): void {
    try {
      this.#handlers!.onEnd();
    } catch (error) {
      this.#close(asError(error));
      return;
    }
    // After onEnd: with our FIN out already, this closes, and onClose follows onEnd.
    this.#move(PEER_FIN);
  }

  async #writeLoop(): Promise<void> {
    const conn = this.#conn;
    for (;;) {
      const chunk = this.#queue.next();
      if (chunk === undefined) break;
      let written: number;
      try {
        written = await conn.write(chunk);
      } catch (error) {
        this.#writeFailed(error);
        return;
      }
      if (!this.#wrote(written)) return;
    }
    const shutdown = this.#writesDone();
    if (shutdown !== undefined) await shutdown;
  }

  #writeFailed(error: unknown): void {
    if (this.#state !== CLOSED) this.#close(isClosedError(error) ? undefined : this.#ioError("write to", error));
  }

  /** Deno took `written` bytes of the last chunk: `false` when the connection is closed (or closes now). */
  #wrote(written: number): boolean {
    if (this.#state === CLOSED) return false;
    if (!(written > 0)) {
      this.#close(this.#ioError("write to", new Error("The runtime wrote no bytes")));
      return false;
    }
    this.#queue.advance(written);
    return true;
  }

  /** The backlog is written: send a pending FIN (the promise) or report the drain. */
  #writesDone(): Promise<void> | undefined {
    this.#writing = false;
    // As on Node, no drain after end(): FIN follows the backlog instead.
    const state = this.#state;
    if (state === ENDING || state === ENDING_AFTER_PEER) return this.#shutdown();
    if (!this.#queue.takeDrain()) return undefined;
    const handlers = this.#handlers;
    if (handlers === undefined) {
      (this.#early ??= new EarlyEvents()).add(() => this.#handlers!.onDrain());
      return undefined;
    }
    try {
      handlers.onDrain();
    } catch (error) {
      this.#close(asError(error));
    }
    return undefined;
  }

  /** Send FIN (the backlog is empty); close fully if the peer's FIN was read already. */
  async #shutdown(): Promise<void> {
    try {
      await this.#conn.closeWrite();
    } catch (error) {
      if (this.#state !== CLOSED) this.#close(isClosedError(error) ? undefined : this.#ioError("shut down the connection to", error));
      return;
    }
    this.#move(FIN_OUT);
  }

  #ioError(action: string, error: unknown): SocketError {
    return socketError(action, this.remote.host, this.remote.port, errorCode(error), error);
  }

  /** Close (a no-op once closed), reporting `error`. */
  #close(error: SocketError | undefined): void {
    this.#move(CLOSE, error);
  }

  /** Entered `CLOSED`: pending reads, writes and `closeWrite` now reject quietly; `onClose` follows, or waits for `start()`. */
  #enterClosed(error: SocketError | undefined): void {
    this.#closeError = error;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    this.#queue.clear();
    this.#wakeReader();
    if (this.#handlers !== undefined) this.#report();
    else (this.#early ??= new EarlyEvents()).addClose(() => this.#report());
  }

  #report(): void {
    try {
      this.#handlers!.onClose(this.#closeError);
    } catch (error) {
      rethrowAsync(error);
    }
  }
}

class DenoListenerAdapter implements Listener {
  readonly address: SocketAddress;
  readonly #listener: DenoListener;
  readonly #onConnection: (connection: Connection) => void;
  readonly #onAcceptError: ((error: Error) => void) | undefined;
  readonly #accepting: Promise<void>;
  #closed = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryWake: (() => void) | undefined;

  constructor(listener: DenoListener, options: ListenOptions, onConnection: (connection: Connection) => void) {
    this.#listener = listener;
    this.address = addressOf(listener.addr);
    this.#onConnection = onConnection;
    this.#onAcceptError = options.onAcceptError;
    this.#accepting = this.#acceptLoop().catch(rethrowAsync);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener.close();
      } catch {
        // Already closed.
      }
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      const wake = this.#retryWake;
      this.#retryWake = undefined;
      wake?.();
    }
    // Resolves once the accept loop has ended: no operation of the listener is left pending.
    return this.#accepting;
  }

  async #acceptLoop(): Promise<void> {
    const listener = this.#listener;
    while (!this.#closed) {
      let conn: DenoConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closed || isClosedError(error)) return;
        const { host, port } = this.address;
        const failure = socketError("accept on", host, port, errorCode(error), error);
        try {
          this.#onAcceptError?.(failure);
        } catch (thrown) {
          rethrowAsync(thrown);
        }
        // A peer that left before its accept costs one loop turn; only exhaustion waits.
        if (acceptFailureKind(failure.code) !== "peer-gone") await this.#retryDelay();
        continue;
      }
      if (this.#closed) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
        return;
      }
      try {
        this.#onConnection(new DenoConnection(conn, true));
      } catch (error) {
        rethrowAsync(error);
      }
    }
  }

  #retryDelay(): Promise<void> {
    return new Promise((resolve) => {
      this.#retryWake = resolve;
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#retryWake = undefined;
        resolve();
      }, ACCEPT_RETRY_MS);
    });
  }
}

/**
 * The Deno transport. Needs `--allow-net`; without it, `listen` and `connect`
 * fail with `code` `EPERM` instead of prompting.
 *
 * @example
 * ```ts ignore
 * import { denoTransport } from "./src/transport/deno.ts";
 * const listener = await denoTransport.listen({ host: "127.0.0.1", port: 0 }, (c) => c.abort());
 * await listener.close();
 * ```
 */
export const denoTransport: Transport = {
  runtime: "deno",

  listen(options: ListenOptions, onConnection: (connection: Connection) => void): Promise<Listener> {
    const { host, port } = options;
    let listener: DenoListener;
    try {
      checkNetPermission("listen on", host, port);
    } catch (error) {
      return Promise.reject(error);
    }
    const reusePort = options.reusePort === true;
    if (reusePort && deno.listenDatagram === undefined) {
      // Deno would exit the process (status 70) rather than throw.
      const why = new Error('reusePort needs --unstable-net (or "unstable": ["net"] in deno.json)');
      return Promise.reject(socketError("listen on", host, port, "ENOTSUP", why));
    }
    try {
      listener = deno.listen(reusePort ? { hostname: host, port, transport: "tcp", reusePort } : { hostname: host, port, transport: "tcp" });
    } catch (error) {
      return Promise.reject(operationError("listen on", host, port, error));
    }
    return Promise.resolve(new DenoListenerAdapter(listener, options, onConnection));
  },

  workerSupport(): WorkerSupport {
    const os = deno.build?.os ?? "unknown";
    if (os !== "linux") return { problem: `Deno balances a shared port (reusePort) only on Linux, not on ${os}` };
    if (deno.listenDatagram === undefined) {
      return { problem: 'sharing a port (reusePort) needs --unstable-net (or "unstable": ["net"] in deno.json)' };
    }
    // Threads: a Web Worker has this process's permissions (--allow-net);
    // worker processes would need --allow-run and --allow-env too.
    return { mode: "reuse-port", threads: true };
  },

  async connect(options: ConnectOptions): Promise<Connection> {
    const { host, port } = options;
    checkNetPermission("connect to", host, port);
    let conn: DenoConn;
    try {
      conn = await deno.connect({ hostname: host, port, transport: "tcp" });
    } catch (error) {
      throw operationError("connect to", host, port, error);
    }
    return new DenoConnection(conn, false);
  },
};
