/**
 * Structural types for the few members of Bun's native TCP API that the Bun
 * adapter uses. Declared here instead of importing `bun-types`, which
 * redeclares globals and would break the type checks of code that imports
 * this package. Only what `bun.ts` touches is described, as observed on Bun
 * 1.4.5.
 *
 * @module
 */

/** A connected TCP socket (`Socket` in Bun's API), its `data` slot typed by the adapter. */
export interface BunSocket<Data> {
  /** Per-socket state slot; the adapter stores its connection object here. */
  data: Data;
  /** The peer's IP address. */
  readonly remoteAddress: string;
  /** The peer's port. */
  readonly remotePort: number;
  /** This end's IP address. */
  readonly localAddress: string;
  /** This end's port. */
  readonly localPort: number;
  /**
   * Hand bytes to the kernel.
   *
   * @returns How many bytes were taken (possibly fewer than given; the rest is
   * not kept), or `-1`/`0` once the socket is closed.
   */
  write(data: Uint8Array): number;
  /** Half-close: send FIN, keep reading (with `halfClose` `true` it shuts the reading side instead). */
  shutdown(halfClose?: boolean): void;
  /** Close the descriptor at once (a FIN, or a reset when unread data remains); the close handler runs synchronously. */
  close(): void;
  /** Stop reading. */
  pause(): void;
  /** Start reading again. */
  resume(): void;
  /** Set `TCP_NODELAY`. */
  setNoDelay(noDelay?: boolean): boolean;
}

/** The handlers shared by every socket of one listener or connect call. */
export interface BunSocketHandler<Data> {
  /** The socket is connected (accepted, or the connect succeeded). */
  open?(socket: BunSocket<Data>): void;
  /**
   * How `data` receives bytes: `"uint8array"` delivers a plain `Uint8Array`
   * of memory freshly allocated for the call (the default, `"buffer"`, a
   * `Buffer`; `"arraybuffer"` an `ArrayBuffer`).
   */
  binaryType?: "uint8array";
  /** Bytes arrived, in memory of their own (`binaryType: "uint8array"`). */
  data?(socket: BunSocket<Data>, data: Uint8Array): void;
  /** The socket can take more bytes after a short write. */
  drain?(socket: BunSocket<Data>): void;
  /** The peer sent FIN (with `allowHalfOpen`, the socket stays writable). */
  end?(socket: BunSocket<Data>): void;
  /** The socket closed; `error` is set for a failure such as a reset. */
  close?(socket: BunSocket<Data>, error?: Error): void;
  /** A socket error, or an exception thrown by one of these handlers. */
  error?(socket: BunSocket<Data>, error: Error): void;
}

/** Options of the listen call. */
export interface BunListenOptions<Data> {
  hostname: string;
  port: number;
  /** Keep the socket writable after the peer's FIN. */
  allowHalfOpen?: boolean;
  /** Bind without `SO_REUSEPORT`. */
  exclusive?: boolean;
  /** Bind with `SO_REUSEPORT`, so that other listeners can share the port (Linux balances between them). */
  reusePort?: boolean;
  socket: BunSocketHandler<Data>;
}

/** Options of the connect call. */
export interface BunConnectOptions<Data> {
  hostname: string;
  port: number;
  /** Keep the socket writable after the peer's FIN. */
  allowHalfOpen?: boolean;
  socket: BunSocketHandler<Data>;
}

/** A bound TCP listener (`TCPSocketListener` in Bun's API). */
export interface BunTcpListener {
  /** The port actually bound. */
  readonly port: number;
  /** The host name given to the listen call. */
  readonly hostname: string;
  /** Fill `out` with the bound address (absent on older Bun versions). */
  getsockname?(out: { address?: string; port?: number; family?: string }): void;
  /** Stop accepting; with `closeActiveConnections` `false`, open sockets are kept. */
  stop(closeActiveConnections?: boolean): void;
}

/** The members of the `Bun` global used by the adapter. */
export interface BunApi {
  /** Bind and accept; throws (with `code`) when binding fails. */
  listen<Data>(options: BunListenOptions<Data>): BunTcpListener;
  /** Connect; rejects (with `code`) when connecting fails. */
  connect<Data>(options: BunConnectOptions<Data>): Promise<BunSocket<Data>>;
}
