/**
 * A server's side of its cluster: turns broadcasts, topic publishes and
 * pushes into {@link BusMessage}s and back, answers other nodes' pushes,
 * keeps the list of live nodes from their heartbeats, and counts what the bus
 * carried. A server alone has one too, over a {@link LocalBus}.
 *
 * @module
 */

import type { Clock, TimerHandle } from "../clock.ts";
import { type Logger, ThrottledLog } from "../logger.ts";
import { type Bus, type BusIdentity, type BusMessage, LocalBus, nodeOfSession } from "./bus.ts";

/** A live node, as {@link ServerCluster.nodes} lists it. */
export interface ClusterNode {
  /** The node's name. */
  readonly node: string;
  /** Its number: the high part of its sessions' ids. */
  readonly number: number;
  /** Sessions it held at its last heartbeat (this node's: now). */
  readonly sessions: number;
  /** `true` for this node. */
  readonly self: boolean;
}

/** What the bus carried, in {@link ServerStats.bus}. */
export interface BusStats {
  /** Messages this node sent on the bus (broadcasts, publishes, pushes to other nodes). */
  published: number;
  /** Messages from other nodes delivered here (broadcasts, publishes, pushes). */
  delivered: number;
  /** Messages not sent because the bus was down (nothing is queued meanwhile). */
  dropped: number;
}

/**
 * A server's view of its cluster: `server.cluster`.
 *
 * @example
 * ```ts
 * import { serve } from "@tlvkit/tlvkit";
 * const server = await serve({ port: 0 });
 * console.log(server.cluster.nodes().length); // 1: a server alone is a cluster of one
 * await server.close();
 * ```
 */
export interface ServerCluster {
  /** This node's name. */
  readonly node: string;
  /** This node's number (0 for a server alone). */
  readonly number: number;
  /**
   * The live nodes, this one first. A node is live from its first heartbeat
   * until it leaves (at once, on a clean shutdown) or is not heard from for
   * three of its heartbeat intervals.
   */
  nodes(): ClusterNode[];
}

/** Options of a server's cluster (`ClusterOptions` and the bus's own). */
export interface ClusterTuning {
  /**
   * Milliseconds between heartbeats; a node unheard for three of them is
   * dropped from `nodes()`.
   * @default {1000}
   */
  heartbeatInterval?: number;
  /**
   * Milliseconds a push to another node waits for its answer before it
   * resolves to `false`.
   * @default {5000}
   */
  pushTimeout?: number;
}

/**
 * The `cluster` option of {@link serve}: one server across cores and
 * machines. Give `redis` to join the nodes that share a Redis server (the
 * `redis` package, an optional peer dependency, is loaded then), or a `bus`
 * of your own.
 */
export interface ClusterOptions extends ClusterTuning {
  /**
   * A Redis server's URL, `redis://[[user]:password@]host[:port][/db]`
   * (`rediss://` for TLS): its pub/sub carries messages between nodes.
   */
  redis?: string;
  /**
   * This node's name, unique in the cluster: a second node that claims a
   * name in use is refused at start.
   * @default {"node-" followed by 8 random hex digits}
   */
  node?: string;
  /**
   * Prefix of every Redis channel and key the cluster uses, so that several
   * clusters can share one Redis server.
   * @default {"tlvkit"}
   */
  prefix?: string;
  /** A bus of your own instead of Redis (see `Bus`). */
  bus?: Bus;
}

/** What the cluster asks of its server. */
export interface ClusterHost {
  /** Deliver to every local session but `except`; returns how many queued it. */
  deliverBroadcast(id: number, body: Uint8Array, except: number): number;
  /** Deliver to the local subscribers of `topic` but `except`; returns how many queued it. */
  deliverPublish(topic: string, id: number, body: Uint8Array, except: number): number;
  /** Deliver to local session `session`; `false` when there is none (or it closed). */
  deliverPush(session: number, id: number, body: Uint8Array): boolean;
  /** Sessions open here. */
  sessionCount(): number;
}

/** Default of {@link ClusterTuning.heartbeatInterval}. */
export const DEFAULT_HEARTBEAT_INTERVAL = 1000;
/** Default of {@link ClusterTuning.pushTimeout}. */
export const DEFAULT_PUSH_TIMEOUT = 5000;
/** Missed heartbeats after which a node is taken for dead. */
const MISSED_HEARTBEATS = 3;
/** Pushes to other nodes awaiting an answer at once; past it a push resolves to `false` at once. */
const MAX_PENDING_PUSHES = 100_000;

interface Peer {
  node: string;
  sessions: number;
  lastSeen: number;
  interval: number;
}

interface PendingPush {
  resolve(ok: boolean): void;
  timer: TimerHandle;
}

/** A server's membership in its cluster. */
export class Cluster implements ServerCluster {
  readonly #bus: Bus;
  readonly #host: ClusterHost;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #heartbeatInterval: number;
  readonly #pushTimeout: number;
  #identity: BusIdentity = { node: "", number: 0 };
  readonly #peers = new Map<number, Peer>();
  readonly #pending = new Map<number, PendingPush>();
  #nextRequest = 1;
  #heartbeat: TimerHandle | undefined;
  #up = true;
  #closed = false;
  readonly #stats: BusStats = { published: 0, delivered: 0, dropped: 0 };
  readonly #deliveryLog = new ThrottledLog();

  /**
   * @param bus The bus to join.
   * @param host The server it serves.
   * @param logger For joins, leaves and the bus's ups and downs.
   * @param clock Timers.
   * @param tuning Heartbeat and push timing (validated here).
   * @throws {RangeError} When a timing is not a positive integer.
   */
  constructor(bus: Bus, host: ClusterHost, logger: Logger, clock: Clock, tuning: ClusterTuning = {}) {
    this.#bus = bus;
    this.#host = host;
    this.#logger = logger;
    this.#clock = clock;
    this.#heartbeatInterval = positive("heartbeatInterval", tuning.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL);
    this.#pushTimeout = positive("pushTimeout", tuning.pushTimeout ?? DEFAULT_PUSH_TIMEOUT);
  }

  /** Join: start the bus, announce this node, and keep announcing it. */
  async start(): Promise<void> {
    this.#identity = await this.#bus.start({
      message: (message) => this.#receive(message),
      state: (up, error) => this.#busState(up, error),
    });
    this.#beat();
  }

  get node(): string {
    return this.#identity.node;
  }

  get number(): number {
    return this.#identity.number;
  }

  nodes(): ClusterNode[] {
    const self = this.#identity;
    const list: ClusterNode[] = [{ node: self.node, number: self.number, sessions: this.#host.sessionCount(), self: true }];
    for (const [number, peer] of this.#peers) list.push({ node: peer.node, number, sessions: peer.sessions, self: false });
    return list;
  }

  /** A copy of the bus counters. */
  stats(): BusStats {
    return { ...this.#stats };
  }

  /** Tell the other nodes to deliver a broadcast. */
  broadcast(id: number, body: Uint8Array, except: number): void {
    this.#publish({ kind: "broadcast", origin: this.number, id, body, except });
  }

  /** Tell the other nodes to deliver a topic publish. */
  publish(topic: string, id: number, body: Uint8Array, except: number): void {
    this.#publish({ kind: "publish", origin: this.number, topic, id, body, except });
  }

  /** This node wants publishes of `topic`. */
  join(topic: string): void {
    this.#bus.join(topic);
  }

  /** This node no longer wants publishes of `topic`. */
  leave(topic: string): void {
    this.#bus.leave(topic);
  }

  /**
   * Push to a session another node holds.
   *
   * @returns Resolves to whether that node queued it: `false` when no live
   *   node holds the session, the bus is down, or no answer came within the
   *   push timeout.
   */
  pushRemote(sessionId: number, id: number, body: Uint8Array): Promise<boolean> {
    const target = nodeOfSession(sessionId);
    if (this.#closed || !this.#peers.has(target) || this.#pending.size >= MAX_PENDING_PUSHES) return Promise.resolve(false);
    const request = this.#nextRequest;
    this.#nextRequest = request >= 0xffffffff ? 1 : request + 1;
    this.#stats.published++;
    if (!this.#bus.sendTo(target, { kind: "push", origin: this.number, target, session: sessionId, id, body, request })) {
      this.#stats.dropped++;
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pending.delete(request);
        resolve(false);
      }, this.#pushTimeout);
      this.#pending.set(request, { resolve, timer });
    });
  }

  /** Leave: tell the others at once, stop the heartbeat, close the bus. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#heartbeat !== undefined) this.#clock.clearTimeout(this.#heartbeat);
    this.#heartbeat = undefined;
    for (const [request, pending] of this.#pending) {
      this.#clock.clearTimeout(pending.timer);
      pending.resolve(false);
      this.#pending.delete(request);
    }
    this.#bus.publish({ kind: "leave", origin: this.number, node: this.node });
    this.#peers.clear();
    await this.#bus.close();
  }

  #publish(message: BusMessage): void {
    // A server alone has nobody to tell.
    if (this.#bus instanceof LocalBus) return;
    this.#stats.published++;
    if (!this.#bus.publish(message)) this.#stats.dropped++;
  }

  #beat(): void {
    // A server alone has nobody to tell.
    if (this.#closed || this.#bus instanceof LocalBus) return;
    const now = this.#clock.now();
    for (const [number, peer] of this.#peers) {
      if (now - peer.lastSeen > MISSED_HEARTBEATS * peer.interval) {
        this.#peers.delete(number);
        this.#logger.warn(`cluster: node ${peer.node} not heard from for ${now - peer.lastSeen} ms: taken for dead`);
      }
    }
    this.#bus.publish({
      kind: "heartbeat",
      origin: this.number,
      node: this.node,
      sessions: this.#host.sessionCount(),
      interval: this.#heartbeatInterval,
    });
    this.#heartbeat = this.#clock.setTimeout(() => this.#beat(), this.#heartbeatInterval);
  }

  #busState(up: boolean, error?: Error): void {
    if (up === this.#up || this.#closed) return;
    this.#up = up;
    if (up) {
      this.#logger.info("cluster: bus connected again; messages to other nodes flow again");
      // Announce at once rather than at the next beat.
      this.#bus.publish({ kind: "heartbeat", origin: this.number, node: this.node, sessions: this.#host.sessionCount(), interval: this.#heartbeatInterval });
    } else {
      this.#logger.error(
        `cluster: lost the bus${error ? ` (${error.message})` : ""}; serving this node's sessions, reconnecting, and dropping messages to other nodes meanwhile`,
      );
    }
  }

  #receive(message: BusMessage): void {
    if (this.#closed || message.origin === this.number) return;
    try {
      this.#handle(message);
    } catch (error) {
      // A frame this node cannot send (its layout holds less than the sender's), or a hook that threw.
      this.#deliveryLog.log(
        this.#clock.now(),
        (line) => this.#logger.warn(line),
        `cluster: could not deliver a ${message.kind} from node number ${message.origin}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  #handle(message: BusMessage): void {
    switch (message.kind) {
      case "broadcast":
        this.#stats.delivered++;
        this.#host.deliverBroadcast(message.id, message.body, message.except);
        return;
      case "publish":
        this.#stats.delivered++;
        this.#host.deliverPublish(message.topic, message.id, message.body, message.except);
        return;
      case "push": {
        if (message.target !== this.number) return;
        this.#stats.delivered++;
        let ok = false;
        let failure: unknown;
        try {
          ok = this.#host.deliverPush(message.session, message.id, message.body);
        } catch (error) {
          failure = error;
        }
        // Answered whatever happened: the pusher need not wait out its timeout.
        this.#bus.sendTo(message.origin, { kind: "pushed", origin: this.number, target: message.origin, request: message.request, ok });
        if (failure !== undefined) throw failure;
        return;
      }
      case "pushed": {
        if (message.target !== this.number) return;
        const pending = this.#pending.get(message.request);
        if (pending === undefined) return;
        this.#pending.delete(message.request);
        this.#clock.clearTimeout(pending.timer);
        pending.resolve(message.ok);
        return;
      }
      case "heartbeat": {
        const known = this.#peers.get(message.origin);
        if (known === undefined) {
          // A node that restarted under the same name: its old number is gone.
          for (const [number, peer] of this.#peers) if (peer.node === message.node) this.#peers.delete(number);
          this.#logger.info(`cluster: node ${message.node} joined`);
        }
        this.#peers.set(message.origin, {
          node: message.node,
          sessions: message.sessions,
          lastSeen: this.#clock.now(),
          interval: message.interval > 0 ? message.interval : DEFAULT_HEARTBEAT_INTERVAL,
        });
        return;
      }
      case "leave":
        if (this.#peers.delete(message.origin)) this.#logger.info(`cluster: node ${message.node} left`);
        return;
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Invalid option "${name}": ${String(value)} is not a positive integer`);
  }
  return value;
}
