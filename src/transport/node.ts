/**
 * The Node.js adapter: `node:net` mapped onto the {@link Transport} interface.
 *
 * Node's quirks handled here: sockets are created with `allowHalfOpen` (Node
 * closes on the peer's FIN otherwise); `write()` always takes the whole buffer
 * and returns `false` at the stream's high-water mark (16 KiB on Node 20), after
 * which `drain` is awaited; each `data` event brings a fresh `Buffer`, never
 * reused; an `error` event is always followed by `close`, and is captured here
 * so it never becomes an uncaught exception; writing after `end()` would raise
 * `ERR_STREAM_WRITE_AFTER_END`, so it is a no-op instead.
 *
 * @module
 */

import cluster from "node:cluster";
import * as net from "node:net";
import process from "node:process";
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

class NodeConnection implements Connection {
  readonly remote: SocketAddress;
  readonly local: SocketAddress;
  readonly #socket: net.Socket;
  #handlers: ConnectionHandlers | undefined;
  #early: Array<() => void> = [];
  #error: (Error & { code?: string }) | undefined;
  #closed = false;
  #ended = false;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    this.remote = socketAddress(socket.remoteAddress, socket.remotePort);
    this.local = socketAddress(socket.localAddress, socket.localPort);
    socket.setNoDelay(true);
    socket.on("error", (error: Error & { code?: string }) => {
      this.#error ??= error;
    });
    socket.on("close", () => this.#emit(() => this.#fireClose()));
  }

  start(handlers: ConnectionHandlers): void {
    if (this.#handlers) throw new Error("Cannot start a connection twice");
    this.#handlers = handlers;
    const socket = this.#socket;
    socket.on("data", (chunk: Uint8Array) => {
      if (!this.#closed) handlers.onData(chunk);
    });
    socket.on("end", () => {
      if (!this.#closed) handlers.onEnd();
    });
    socket.on("drain", () => {
      if (!this.#closed) handlers.onDrain();
    });
    const early = this.#early;
    this.#early = [];
    for (const event of early) event();
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
    if (!this.#closed) this.#socket.pause();
  }

  resume(): void {
    if (!this.#closed) this.#socket.resume();
  }

  setNoDelay(noDelay: boolean): void {
    if (!this.#closed) this.#socket.setNoDelay(noDelay);
  }

  #emit(event: () => void): void {
    if (this.#handlers) event();
    else this.#early.push(event);
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
      const server = net.createServer({ allowHalfOpen: true }, (socket) => {
        onConnection(new NodeConnection(socket));
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
      const socket = net.connect({ host, port, allowHalfOpen: true });
      const onError = (error: Error): void => {
        socket.destroy();
        reject(socketError("connect to", host, port, errorCode(error), error));
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        socket.off("error", onError);
        resolve(new NodeConnection(socket));
      });
    });
  },
};
