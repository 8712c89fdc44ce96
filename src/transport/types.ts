/**
 * The one small socket interface that every runtime adapter maps onto. The
 * framer, sessions, router, server and client are written against these types
 * only; `node.ts`, `deno.ts` and `bun.ts` beside this file are the only code
 * that touches a runtime's own socket API.
 *
 * Contract highlights (each adapter honours all of them):
 *
 * - **Chunks are owned by the receiver.** A chunk passed to `onData` is never
 *   reused or overwritten by the adapter, so frames decoded as views of it stay
 *   valid for as long as they are referenced, unless `onData` returns `true`
 *   (the receiver kept no reference): then the adapter may read into the same
 *   memory again (Node's and Deno's do, and Bun's copies chunks into memory
 *   it reuses, all but the largest: see its module doc).
 * - **`write` takes the whole buffer.** Whatever the OS does not take at once
 *   (Deno's and Bun's writes may be partial) the adapter keeps and sends, in
 *   order, before anything written later. The caller must not modify the buffer
 *   afterwards. `write` returns `false` when the caller should wait for
 *   `onDrain` before writing more; it never buffers twice what the caller keeps.
 * - **Events after close are swallowed.** Once `onClose` has fired, no handler
 *   runs again, and `write`, `end`, `pause`, `resume` and `abort` are no-ops.
 * - **`onClose` fires exactly once**, whatever closed the connection.
 *
 * @module
 */

/** Which runtime an adapter drives. */
export type RuntimeName = "node" | "deno" | "bun";

/** Host and port of one end of a connection or of a listener. */
export interface SocketAddress {
  /** IP address as text (`127.0.0.1`, `::1`). */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
}

/** Callbacks a connection delivers its events to. Set once with {@link Connection.start}. */
export interface ConnectionHandlers {
  /**
   * Bytes arrived. The chunk belongs to the receiver from now on, unless this
   * returns `true`: nothing refers to the chunk any more (the receiver copied
   * what it keeps), so the adapter may read into its memory again.
   */
  onData(chunk: Uint8Array): boolean | void;
  /** The peer half-closed its sending side (FIN). Writing is still possible. */
  onEnd(): void;
  /** Everything written so far has left the adapter's own backlog. */
  onDrain(): void;
  /**
   * The connection is fully closed. `error` is set when it closed because of a
   * failure (a reset, say); then `error.code` holds the system code when known
   * (`ECONNRESET`, `EPIPE`).
   */
  onClose(error?: Error & { code?: string }): void;
}

/** One TCP connection, as every adapter presents it. */
export interface Connection {
  /** The peer's address. */
  readonly remote: SocketAddress;
  /** This end's address. */
  readonly local: SocketAddress;
  /**
   * Start delivering events. Events that happened before (data, end, close) are
   * delivered, in order, as soon as this is called. Call it once.
   */
  start(handlers: ConnectionHandlers): void;
  /**
   * Send bytes, in order after everything written before. The adapter owns the
   * buffer until {@link Connection.backlog} is 0 again: then every byte
   * written so far was handed to the OS and the adapter keeps no reference to
   * any buffer it was given, so the caller may reuse them. That is at once
   * when `backlog` is 0 as `write` returns, else when `onDrain` fires (the
   * session does both, to encode its flushes into the same memory).
   *
   * @returns `false` when the caller should wait for `onDrain` before writing
   * more (the adapter holds a backlog), `true` otherwise.
   */
  write(bytes: Uint8Array): boolean;
  /** Bytes accepted by `write` that have not yet been handed to the OS. */
  readonly backlog: number;
  /** Half-close: send FIN once the backlog is written. Reading goes on. */
  end(): void;
  /** Close at once, discarding the backlog (the peer may see a reset). */
  abort(): void;
  /** Stop reading (TCP then slows the peer down). Idempotent. */
  pause(): void;
  /** Start reading again after {@link Connection.pause}. Idempotent. */
  resume(): void;
  /** Enable or disable Nagle's algorithm (`true` sends small writes at once). */
  setNoDelay(noDelay: boolean): void;
}

/** A bound, accepting TCP listener. */
export interface Listener {
  /** The address actually bound (the real port when 0 was asked for). */
  readonly address: SocketAddress;
  /** Stop accepting; new connections are refused. Open connections are untouched. */
  close(): Promise<void>;
}

/** Options for {@link Transport.listen}. */
export interface ListenOptions {
  /** Address to bind. */
  host: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /**
   * Called when accepting a connection fails. The listener keeps accepting:
   * at once when the peer was gone before its accept (reported with `code`
   * `ENOTCONN` by every adapter, or another code `_accept_failure.ts` calls
   * `peer-gone`), after a short back-off otherwise (out of file descriptors,
   * say).
   */
  onAcceptError?: (error: Error) => void;
  /**
   * Share the port with other listeners that ask for it too, in this process or
   * others (`serve --workers`): `SO_REUSEPORT` on Deno (Linux; needs
   * `--unstable-net`) and Bun, where the kernel spreads new connections over
   * the listeners; on Node only inside a `node:cluster` worker, where the
   * cluster primary accepts and hands connections to the workers in turn
   * (Node 20 has no `SO_REUSEPORT`). Off, a port in use is an error.
   * @default {false}
   */
  reusePort?: boolean;
}

/**
 * How this runtime runs several servers on one port (see
 * {@link Transport.workerSupport}): `"reuse-port"` (each binds with
 * `SO_REUSEPORT`) or `"cluster"` (a `node:cluster` primary accepts), and
 * `threads` when the servers should be Web Workers of one process rather than
 * processes (Deno: a thread inherits the process's permissions, a process
 * needs `--allow-run`); or, when it cannot, `problem`, a sentence saying why
 * and what would help.
 */
export type WorkerSupport = { mode: "reuse-port" | "cluster"; threads?: boolean } | { problem: string };

/** Options for {@link Transport.connect}. */
export interface ConnectOptions {
  /** Host to connect to. */
  host: string;
  /** Port to connect to. */
  port: number;
}

/**
 * A runtime's socket API, mapped onto {@link Connection} and {@link Listener}.
 */
export interface Transport {
  /** The runtime this adapter drives. */
  readonly runtime: RuntimeName;
  /**
   * Bind and accept. `onConnection` runs for every accepted connection; call
   * `start` on it to receive its events.
   *
   * @throws {Error} With `code` `EADDRINUSE`, `EACCES` or `EADDRNOTAVAIL` (and a
   * message naming host:port) when binding fails; `code` `EPERM` when the
   * runtime lacks the permission.
   */
  listen(options: ListenOptions, onConnection: (connection: Connection) => void): Promise<Listener>;
  /**
   * Connect to a listener.
   *
   * @throws {Error} With `code` (`ECONNREFUSED`, ...) and a message naming host:port.
   */
  connect(options: ConnectOptions): Promise<Connection>;
  /**
   * Whether and how processes can share a port here (`serve --workers`).
   * Absent on adapters that do not say: treated as unsupported.
   */
  workerSupport?(): WorkerSupport;
}
