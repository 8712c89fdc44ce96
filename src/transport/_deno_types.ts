/**
 * Structural types for the few members of Deno's global namespace that the
 * Deno adapter (`deno.ts`) uses. `tsc` has no Deno types, so the adapter reads
 * the global through these instead of the runtime's own declarations; they
 * describe only what is called, and only as much as is relied on.
 *
 * @module
 */

/** A TCP address as Deno reports it (`conn.remoteAddr`, `listener.addr`). */
export interface DenoNetAddr {
  /** `"tcp"` for the sockets used here. */
  readonly transport: string;
  /** IP address as text. */
  readonly hostname: string;
  /** TCP port. */
  readonly port: number;
}

/** A connected TCP socket (Deno's `Conn`). */
export interface DenoConn {
  /** This end's address. */
  readonly localAddr: DenoNetAddr;
  /** The peer's address. */
  readonly remoteAddr: DenoNetAddr;
  /**
   * Read into `buffer`. Resolves with the number of bytes read (possibly fewer
   * than asked for), or `null` at end of stream. Rejects (`Interrupted`,
   * `BadResource`) when the connection is closed while the read is pending.
   */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Write from `buffer`. Resolves with the number of bytes written, possibly fewer. */
  write(buffer: Uint8Array): Promise<number>;
  /** Shut down the sending side (FIN). */
  closeWrite(): Promise<void>;
  /** Close the socket; pending reads and writes reject. Throws when already closed. */
  close(): void;
  /** Enable or disable Nagle's algorithm. */
  setNoDelay(noDelay?: boolean): void;
}

/** A bound TCP listener (Deno's `Listener`). */
export interface DenoListener {
  /** The address bound. */
  readonly addr: DenoNetAddr;
  /** Wait for the next connection. Rejects (`BadResource`) once the listener is closed. */
  accept(): Promise<DenoConn>;
  /** Stop listening. Throws when already closed. */
  close(): void;
}

/** Options of Deno's `listen` as used here. */
export interface DenoListenOptions {
  /** Address to bind. */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Always `"tcp"` here. */
  transport: "tcp";
  /** Bind with `SO_REUSEPORT` (Linux). Unstable: without `--unstable-net` Deno exits the process (status 70). */
  reusePort?: boolean;
}

/** Options of Deno's `connect` as used here. */
export interface DenoConnectOptions {
  /** Host to connect to. */
  hostname: string;
  /** Port to connect to. */
  port: number;
  /** Always `"tcp"` here. */
  transport: "tcp";
}

/** A permission descriptor for network access (Deno's `NetPermissionDescriptor`). */
export interface DenoNetPermissionDescriptor {
  /** Always `"net"` here. */
  name: "net";
  /** `host:port`, with an IPv6 host in brackets. */
  host: string;
}

/** A permission descriptor for reading the environment (Deno's `EnvPermissionDescriptor`). */
export interface DenoEnvPermissionDescriptor {
  /** Always `"env"` here. */
  name: "env";
}

/** A permission descriptor for starting programs (Deno's `RunPermissionDescriptor`). */
export interface DenoRunPermissionDescriptor {
  /** Always `"run"` here. */
  name: "run";
  /** The program, by path. */
  command: string;
}

/** The state of a permission (Deno's `PermissionStatus`). */
export interface DenoPermissionStatus {
  /** `"granted"`, `"denied"` or `"prompt"` (asking would prompt the user). */
  readonly state: string;
}

/** The part of Deno's global namespace the adapter uses. */
export interface DenoApi {
  /** Bind a TCP listener. Throws synchronously (`AddrInUse`, `NotCapable`, ...). */
  listen(options: DenoListenOptions): DenoListener;
  /** Open a TCP connection. */
  connect(options: DenoConnectOptions): Promise<DenoConn>;
  /** Permission queries; absent on runtimes that only emulate parts of the API. */
  readonly permissions?: {
    /** Query a permission's state without prompting. */
    querySync?(
      descriptor: DenoNetPermissionDescriptor | DenoRunPermissionDescriptor | DenoEnvPermissionDescriptor,
    ): DenoPermissionStatus;
  };
  /** The path of the running `deno` executable. */
  execPath?(): string;
  /** Present only with `--unstable-net`: its presence tells that the flag is on. */
  readonly listenDatagram?: unknown;
  /** Facts about the build; `os` is `"linux"`, `"darwin"`, `"windows"`... */
  readonly build?: { readonly os: string };
}
