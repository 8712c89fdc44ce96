/**
 * Shared scaffolding for the transport adapter tests: a handler that records
 * what a connection delivers, and a loopback listener that hands out
 * connected client/server pairs and aborts everything at the end.
 *
 * @module
 */

import { after, before } from "node:test";
import type { Connection, ConnectionHandlers, Listener, Transport } from "../src/transport/types.ts";
import assert from "node:assert/strict";
import { deferred, sleep, within } from "./_async.ts";
import { concat } from "./_bytes.ts";

/** The loopback host every transport test listens and connects on. */
export const HOST = "127.0.0.1";

/** An error as the adapters report it, with an optional errno-style code. */
export type CodedError = Error & { code?: string };

/** Records every event a connection delivers, in order. */
export class Recorder implements ConnectionHandlers {
  chunks: Uint8Array[] = [];
  bytes = 0;
  /** Every event in order, one "data" per chunk; see `phases()` for runs of data collapsed. */
  events: string[] = [];
  ended = false;
  drains = 0;
  closes = 0;
  closeError: CodedError | undefined;
  eventsAfterClose = 0;
  /** When set, `onData` throws this after recording the chunk. */
  throwOnData: Error | undefined;
  /**
   * When set, `onData` records a copy of each chunk and returns `true` (it
   * keeps no reference), counting chunks that reuse the previous one's memory.
   */
  copyAndRelease = false;
  /** With `copyAndRelease`: every chunk whose index is a multiple of this is kept as it is (`onData` returns nothing). */
  keepEvery = 0;
  reusedChunks = 0;
  /**
   * When set, `onData` records a copy of each chunk and writes the chunk
   * itself back on this connection; it returns `true` when the backlog is
   * empty at once, and keeps the chunk (returns nothing) otherwise.
   */
  echoVia: Connection | undefined;
  #previous: Uint8Array | undefined;
  readonly closed = deferred();
  readonly gotEnd = deferred();
  readonly drained = deferred();

  onData(chunk: Uint8Array): boolean | void {
    if (this.closes > 0) this.eventsAfterClose++;
    this.bytes += chunk.length;
    this.events.push("data");
    const echo = this.echoVia;
    if (echo !== undefined) {
      this.chunks.push(chunk.slice());
      echo.write(chunk);
      if (echo.backlog === 0) return true;
      return;
    }
    if (!this.copyAndRelease) {
      this.chunks.push(chunk);
      if (this.throwOnData) throw this.throwOnData;
      return;
    }
    const previous = this.#previous;
    if (previous?.buffer === chunk.buffer && previous.byteOffset === chunk.byteOffset) this.reusedChunks++;
    if (this.keepEvery > 0 && this.chunks.length % this.keepEvery === 0) {
      this.#previous = undefined;
      this.chunks.push(chunk);
      return;
    }
    this.#previous = chunk;
    this.chunks.push(chunk.slice());
    return true;
  }
  onEnd(): void {
    if (this.closes > 0) this.eventsAfterClose++;
    this.ended = true;
    this.events.push("end");
    this.gotEnd.resolve();
  }
  onDrain(): void {
    if (this.closes > 0) this.eventsAfterClose++;
    this.drains++;
    this.drained.resolve();
  }
  onClose(error?: CodedError): void {
    this.closes++;
    this.closeError = error;
    this.events.push("close");
    this.closed.resolve();
  }
  /** `events` with each run of consecutive "data" events collapsed into one, for when chunking may vary. */
  phases(): string[] {
    return this.events.filter((event, i) => event !== "data" || this.events[i - 1] !== "data");
  }
  /** All received bytes joined. */
  joined(): Uint8Array {
    return concat(this.chunks);
  }
}

/** A connected client and the server side of the same connection, each started with its own Recorder. */
export interface Pair {
  client: Connection;
  clientRec: Recorder;
  server: Connection;
  serverRec: Recorder;
}

/** A connected client started with its own Recorder. */
export interface Client {
  client: Connection;
  clientRec: Recorder;
}

/**
 * A listener on 127.0.0.1 (port 0) for one test suite that starts each accepted
 * connection with a Recorder, and remembers every connection it is told about
 * so that `close()` can abort them all.
 */
export class TransportHarness {
  /** When set, accepted connections are handed over here without being started. */
  unstarted: ((connection: Connection) => void) | undefined;
  readonly #open: Connection[] = [];
  #nextAccept = deferred<{ connection: Connection; recorder: Recorder }>();
  #transport: Transport | undefined;
  #listener: Listener | undefined;

  private constructor() {}

  /**
   * A harness for the enclosing `describe`: it listens in `before` with the transport `load` gives and
   * closes in `after`. With `load` undefined (the adapter's runtime is not this one) both hooks do nothing.
   */
  static forSuite(load: (() => Promise<Transport>) | undefined): TransportHarness {
    const harness = new TransportHarness();
    before(async () => {
      if (load) await harness.#start(await load());
    });
    after(async () => {
      await harness.close();
    });
    return harness;
  }

  async #start(transport: Transport): Promise<void> {
    this.#transport = transport;
    this.#listener = await transport.listen({ host: HOST, port: 0 }, (connection) => {
      this.track(connection);
      if (this.unstarted) {
        this.unstarted(connection);
        return;
      }
      const recorder = new Recorder();
      connection.start(recorder);
      this.#nextAccept.resolve({ connection, recorder });
    });
  }

  /** The transport under test. */
  get transport(): Transport {
    if (!this.#transport) throw new Error("TransportHarness used before it listened");
    return this.#transport;
  }

  /** The harness's own listener. */
  get listener(): Listener {
    if (!this.#listener) throw new Error("TransportHarness used before it listened");
    return this.#listener;
  }

  /** Remember `connection` so that `close()` aborts it; returns it. */
  track(connection: Connection): Connection {
    this.#open.push(connection);
    return connection;
  }

  /** Connect a tracked client to `port` (by default the harness's listener) and start it with a Recorder. */
  async connect(port: number = this.listener.address.port): Promise<Client> {
    const client = this.track(await this.transport.connect({ host: HOST, port }));
    const clientRec = new Recorder();
    client.start(clientRec);
    return { client, clientRec };
  }

  /** Connect a client to the harness's listener and get the server side unstarted, for a test to start. */
  async unstartedPair(): Promise<Client & { server: Connection }> {
    const accepted = deferred<Connection>();
    this.unstarted = (connection) => accepted.resolve(connection);
    try {
      const { client, clientRec } = await this.connect();
      return { client, clientRec, server: await within(accepted.promise, 5000, "accept") };
    } finally {
      this.unstarted = undefined;
    }
  }

  /** Connect a client to the harness's listener and wait for the server side. */
  async pair(): Promise<Pair> {
    this.#nextAccept = deferred();
    const { client, clientRec } = await within(this.connect(), 5000, "connect");
    const { connection: server, recorder: serverRec } = await within(this.#nextAccept.promise, 5000, "accept");
    return { client, clientRec, server, serverRec };
  }

  /** Abort every tracked connection and close the listener. */
  async close(): Promise<void> {
    for (const connection of this.#open) connection.abort();
    await this.#listener?.close();
  }
}

/**
 * For adapters that catch what a handler throws (Deno, Bun): the connection
 * closes with that error, writes fail after, the peer sees end, and nothing
 * is reported after the one close, whatever the peer does next.
 */
export async function assertHandlerErrorCloses(harness: TransportHarness): Promise<void> {
  const { client, clientRec, server, serverRec } = await harness.pair();
  const oops = new Error("handler failed");
  serverRec.throwOnData = oops;
  client.write(new Uint8Array(10));
  await within(serverRec.closed.promise, 5000, "server close");
  assert.equal(serverRec.closeError, oops);
  assert.equal(server.write(new Uint8Array(1)), false);
  await within(clientRec.gotEnd.promise, 5000, "client to see end");
  client.write(new Uint8Array(10));
  await sleep(20);
  client.abort();
  await sleep(10);
  assert.equal(serverRec.closes, 1);
  assert.equal(serverRec.eventsAfterClose, 0);
}
