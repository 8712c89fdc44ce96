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
 *   buffers (under 16 KiB each, up to 64 KiB) into one write. `write` returns
 *   `false` while that backlog is not empty, and `onDrain` fires once it is.
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
import { runtimeGlobal } from "./_runtime_global.ts";
import { ReadRegions } from "./_read_regions.ts";
import { formatHostPort, socketAddress } from "./_socket_address.ts";
import { errorCode, type SocketError, socketError } from "./_socket_error.ts";
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

/** Queued buffers smaller than this are merged into one write... */
const COALESCE_BELOW = 16 * 1024;
/** ...of at most this many bytes. */
const COALESCE_LIMIT = 64 * 1024;
/** Pause before accepting again after an accept failure. */
const ACCEPT_RETRY_MS = 50;
/** Fills released queue slots. */
const EMPTY = new Uint8Array(0);

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/** Throw `error` outside any promise chain: an uncaught exception, never an unhandled rejection. */
function rethrowAsync(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

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
  readonly local: SocketAddress;
  readonly #conn: DenoConn;
  #handlers: ConnectionHandlers | undefined;
  #closed = false;
  #closeError: SocketError | undefined;
  /** Closes the connection when one of its loops fails unexpectedly. */
  readonly #onLoopError = (error: unknown): void => this.#close(asError(error));

  // Reading.
  readonly #regions = new ReadRegions();
  #paused = false;
  /** Resolves the promise the read loop waits on while paused. */
  #wake: (() => void) | undefined;
  #peerEnded = false;

  // Writing: buffers accepted by write(), sent in order from #queueHead on.
  #queue: Uint8Array[] = [];
  /** End of the queued buffers in `#queue` (the array is kept, not emptied, between backlogs). */
  #queueTail = 0;
  #queueHead = 0;
  /** Bytes of the head buffer already written. */
  #headOffset = 0;
  #backlog = 0;
  #writing = false;
  /** Accepted (server side): the read loop waits for the write in progress before reading on. */
  readonly #readsAfterWrites: boolean;
  /** Settles when the write loop in progress has written everything. */
  #written: Promise<void> | undefined;
  /** The read loop is in `onData` (accepted connections): a write started there is sent by the read loop. */
  #inRead = false;
  /** A write was started inside `onData`: the read loop sends it once `onData` returns. */
  #writeDeferred = false;
  /** end() was called. */
  #ending = false;
  /** closeWrite() has completed. */
  #writeClosed = false;

  /**
   * @param conn The Deno connection.
   * @param readsAfterWrites Wait for the write in progress before each read
   * (accepted connections; see the module doc).
   */
  constructor(conn: DenoConn, readsAfterWrites: boolean) {
    this.#conn = conn;
    this.#readsAfterWrites = readsAfterWrites;
    this.remote = addressOf(conn.remoteAddr);
    this.local = addressOf(conn.localAddr);
    try {
      conn.setNoDelay(true);
    } catch {
      // Already closed by the peer: the first read or write reports it.
    }
  }

  start(handlers: ConnectionHandlers): void {
    if (this.#handlers) throw new Error("Cannot start a connection twice");
    this.#handlers = handlers;
    if (this.#closed) this.#fireClose();
    else this.#readLoop().catch(this.#onLoopError);
  }

  get backlog(): number {
    return this.#backlog;
  }

  write(bytes: Uint8Array): boolean {
    if (this.#closed || this.#ending) return false;
    if (bytes.length > 0) {
      this.#queue[this.#queueTail++] = bytes;
      this.#backlog += bytes.length;
      if (!this.#writing) {
        this.#writing = true;
        if (this.#inRead) this.#writeDeferred = true;
        else this.#written = this.#writeLoop().catch(this.#onLoopError);
      }
    }
    return this.#backlog === 0;
  }

  end(): void {
    if (this.#closed || this.#ending) return;
    this.#ending = true;
    if (!this.#writing) this.#shutdown().catch(this.#onLoopError);
  }

  abort(): void {
    this.#close(undefined);
  }

  pause(): void {
    if (!this.#closed) this.#paused = true;
  }

  resume(): void {
    if (this.#closed || !this.#paused) return;
    this.#paused = false;
    this.#wakeReader();
  }

  setNoDelay(noDelay: boolean): void {
    if (this.#closed) return;
    try {
      this.#conn.setNoDelay(noDelay);
    } catch {
      // Closed underneath: the read or write loop reports it.
    }
  }

  release(chunk: Uint8Array): void {
    if (!this.#closed) this.#regions.release(chunk);
  }

  async #readLoop(): Promise<void> {
    const conn = this.#conn;
    while (!this.#closed) {
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
        while (this.#paused && !this.#closed) await this.#resumed();
        if (!this.#closed) this.#deliverEnd();
        return;
      }
      const chunk = regions.filled(region, read);
      // Bytes read while paused are kept until resume().
      while (this.#paused && !this.#closed) await this.#resumed();
      if (this.#closed) return;
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
        if (this.#closed) return;
        let written: number;
        try {
          written = await conn.write(this.#nextChunk()!);
        } catch (error) {
          this.#writeFailed(error);
          return;
        }
        if (!this.#wrote(written)) return;
        if (this.#queueHead < this.#queueTail) {
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
    if (this.#closed) return; // We closed it: the pending read was cancelled.
    if (isClosedError(error)) this.#close(undefined);
    else this.#close(this.#ioError("read from", error));
  }

  #deliverEnd(): void {
    this.#peerEnded = true;
    try {
      this.#handlers!.onEnd();
    } catch (error) {
      this.#close(asError(error));
      return;
    }
    if (this.#writeClosed) this.#close(undefined);
  }

  async #writeLoop(): Promise<void> {
    const conn = this.#conn;
    for (;;) {
      const chunk = this.#nextChunk();
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
    if (!this.#closed) this.#close(isClosedError(error) ? undefined : this.#ioError("write to", error));
  }

  /** `written` bytes of the head buffer left: `false` when the connection is closed (or closes now). */
  #wrote(written: number): boolean {
    if (this.#closed) return false;
    if (!(written > 0)) {
      this.#close(this.#ioError("write to", new Error("The runtime wrote no bytes")));
      return false;
    }
    this.#advance(written);
    return true;
  }

  /** The backlog is written: send a pending FIN (the promise) or report the drain. */
  #writesDone(): Promise<void> | undefined {
    this.#writing = false;
    // As on Node, no drain after end(): FIN follows the backlog instead.
    if (this.#ending) return this.#shutdown();
    try {
      this.#handlers?.onDrain();
    } catch (error) {
      this.#close(asError(error));
    }
    return undefined;
  }

  /** What to write next: the rest of the head buffer, or a run of small buffers merged into one. */
  #nextChunk(): Uint8Array | undefined {
    const queue = this.#queue;
    const first = this.#queueHead;
    if (first === this.#queueTail) return undefined;
    const head = queue[first]!;
    if (this.#headOffset > 0) return head.subarray(this.#headOffset);
    const tail = this.#queueTail;
    if (head.length >= COALESCE_BELOW || first + 1 >= tail) return head;
    let total = head.length;
    let end = first + 1;
    for (; end < tail; end++) {
      const next = queue[end]!;
      if (next.length >= COALESCE_BELOW || total + next.length > COALESCE_LIMIT) break;
      total += next.length;
    }
    if (end - first < 2) return head;
    const merged = new Uint8Array(total);
    let offset = 0;
    for (let i = first; i < end; i++) {
      const part = queue[i]!;
      merged.set(part, offset);
      offset += part.length;
      queue[i] = EMPTY;
    }
    queue[end - 1] = merged;
    this.#queueHead = end - 1;
    return merged;
  }

  /** Account for `written` bytes of the head buffer having left. */
  #advance(written: number): void {
    this.#backlog -= written;
    const queue = this.#queue;
    const head = queue[this.#queueHead]!;
    const offset = this.#headOffset + written;
    if (offset < head.length) {
      this.#headOffset = offset;
      return;
    }
    this.#headOffset = 0;
    queue[this.#queueHead] = EMPTY;
    const next = ++this.#queueHead;
    if (next === this.#queueTail) {
      // Empty: start again at the front (a long array, after a large backlog, is let go).
      if (queue.length > 1024) this.#queue = [];
      this.#queueHead = this.#queueTail = 0;
    } else if (next >= 1024 && next * 2 >= this.#queueTail) {
      queue.splice(0, next);
      this.#queueTail -= next;
      this.#queueHead = 0;
    }
  }

  /** Send FIN (the backlog is empty); close fully if the peer's FIN was read already. */
  async #shutdown(): Promise<void> {
    try {
      await this.#conn.closeWrite();
    } catch (error) {
      if (!this.#closed) this.#close(isClosedError(error) ? undefined : this.#ioError("shut down the connection to", error));
      return;
    }
    if (this.#closed) return;
    this.#writeClosed = true;
    if (this.#peerEnded) this.#close(undefined);
  }

  #ioError(action: string, error: unknown): SocketError {
    return socketError(action, this.remote.host, this.remote.port, errorCode(error), error);
  }

  /** Close once, whatever the path; pending reads, writes and closeWrite then reject quietly. */
  #close(error: SocketError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = error;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    this.#queue = [];
    this.#queueHead = this.#queueTail = 0;
    this.#headOffset = 0;
    this.#backlog = 0;
    this.#wakeReader();
    if (this.#handlers) this.#fireClose();
  }

  #fireClose(): void {
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
