/**
 * Ordinary clients for storm tests and `bench/storm.ts`: each worker
 * connects, makes a number of request round trips (echo of a body of its
 * own, checked byte for byte), closes, and connects again, until stopped.
 * Round trips are counted by phase (`mark("storm")`), so a caller can compare
 * the rate before, during and after a storm; every failure (a wrong reply, a
 * timeout, a refused connection) is kept with its message.
 *
 * @module
 */

import { type Client, connect } from "../mod.ts";

/** Options of {@link OrdinaryClients}. */
export interface OrdinaryOptions {
  /** Server port. */
  port: number;
  /** Server host. Default `127.0.0.1`. */
  host?: string;
  /** Clients running at once. */
  workers: number;
  /** Round trips per connection before a worker closes and connects again; 0 keeps one connection. */
  roundsPerConnection: number;
  /** A round trip (or a connect, or a close) not done in this many ms is a failure. */
  timeoutMs: number;
  /** Message id of the requests; the server must echo it. Default 7. */
  id?: number;
}

/** Round trips and time spent in one phase. */
export interface PhaseCount {
  roundTrips: number;
  connects: number;
  ms: number;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A set of ordinary clients; see the module doc. */
export class OrdinaryClients {
  readonly #options: OrdinaryOptions;
  readonly #counts = new Map<string, PhaseCount>();
  readonly failures: string[] = [];
  readonly #clients = new Set<Client>();
  #phase: PhaseCount;
  #phaseStarted = Date.now();
  #stopping = false;
  #running: Promise<void>[] = [];

  /** @param options Where, how many, how. */
  constructor(options: OrdinaryOptions) {
    this.#options = options;
    this.#phase = this.#enter("start");
  }

  /** Start the workers, counting into phase `phase`. */
  start(phase: string): void {
    this.mark(phase);
    this.#running = Array.from({ length: this.#options.workers }, (_, worker) => this.#work(worker));
  }

  /** Count what follows into `phase`. */
  mark(phase: string): void {
    const now = Date.now();
    this.#phase.ms += now - this.#phaseStarted;
    this.#phaseStarted = now;
    this.#phase = this.#enter(phase);
  }

  /** Counts so far, by phase (the current phase's time up to now). */
  counts(): Map<string, PhaseCount> {
    const copy = new Map<string, PhaseCount>();
    for (const [name, count] of this.#counts) copy.set(name, { ...count });
    const current = [...this.#counts].find(([, count]) => count === this.#phase)?.[0];
    if (current !== undefined) copy.get(current)!.ms += Date.now() - this.#phaseStarted;
    return copy;
  }

  /** Stop every worker after its round trip in flight, close every client, and return the counts. */
  async stop(): Promise<Map<string, PhaseCount>> {
    const counts = this.counts();
    this.#stopping = true;
    await Promise.all(this.#running);
    for (const client of this.#clients) client.abort();
    return counts;
  }

  #enter(phase: string): PhaseCount {
    let count = this.#counts.get(phase);
    if (count === undefined) {
      count = { roundTrips: 0, connects: 0, ms: 0 };
      this.#counts.set(phase, count);
    }
    return count;
  }

  async #work(worker: number): Promise<void> {
    const { host = "127.0.0.1", port, roundsPerConnection, timeoutMs, id = 7 } = this.#options;
    const text = new TextEncoder();
    let sequence = 0;
    while (!this.#stopping) {
      let client: Client | undefined;
      try {
        client = await withTimeout(connect({ host, port }), timeoutMs, `worker ${worker}: connect`);
        this.#clients.add(client);
        this.#phase.connects++;
        for (let round = 0; !this.#stopping && (roundsPerConnection === 0 || round < roundsPerConnection); round++) {
          const body = text.encode(`worker ${worker} request ${sequence++}`);
          const reply = await client.request(id, body, { timeout: timeoutMs });
          if (reply.id !== id || reply.body.length !== body.length || !reply.body.every((byte, i) => byte === body[i])) {
            throw new Error(`worker ${worker}: wrong reply to request ${sequence - 1} (id ${reply.id}, ${reply.body.length} bytes)`);
          }
          this.#phase.roundTrips++;
        }
        await withTimeout(client.close(), timeoutMs, `worker ${worker}: close`);
      } catch (error) {
        this.failures.push(error instanceof Error ? error.message : String(error));
        client?.abort();
        // Do not spin against a server that refuses.
        await new Promise((resolve) => setTimeout(resolve, 20));
      } finally {
        if (client !== undefined) this.#clients.delete(client);
      }
    }
  }
}
