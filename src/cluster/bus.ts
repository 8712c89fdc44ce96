/**
 * The bus between the nodes of one cluster: the one interface that the
 * in-process bus (a single server), the bus between the workers of
 * `serve --workers N`, and the Redis bus between machines implement. A bus
 * carries {@link BusMessage}s and nothing else: the server's cluster
 * (`cluster.ts`) turns broadcasts, topic publishes and pushes into messages,
 * and tracks which nodes are alive from their heartbeats.
 *
 * What a bus promises: a message published while it is up reaches every
 * other node that listens for it at most once, in the order this node
 * published it (per topic for topic messages). While it is down, `publish`
 * and `sendTo` return `false` and nothing is queued: the cluster counts those
 * messages as dropped.
 *
 * @module
 */

/** A cluster node's identity. */
export interface BusIdentity {
  /** The node's name, unique in the cluster. */
  readonly node: string;
  /**
   * The node's number, unique in the cluster for as long as it runs (a new
   * number every start): the high part of its session ids. 0 for a server
   * alone.
   */
  readonly number: number;
}

/** What crosses the bus. `origin` is the sending node's number. */
export type BusMessage =
  /** Deliver to every session of every other node, but session `except` (0: none). */
  | { kind: "broadcast"; origin: number; id: number; body: Uint8Array; except: number }
  /** Deliver to the sessions subscribed to `topic`, but session `except` (0: none). */
  | { kind: "publish"; origin: number; topic: string; id: number; body: Uint8Array; except: number }
  /** To node `target`: deliver to session `session`, and answer with `pushed`, quoting `request`. */
  | { kind: "push"; origin: number; target: number; session: number; id: number; body: Uint8Array; request: number }
  /** To node `target`: what became of its push `request`. */
  | { kind: "pushed"; origin: number; target: number; request: number; ok: boolean }
  /** "I am alive": sent by every node at every heartbeat interval. */
  | { kind: "heartbeat"; origin: number; node: string; sessions: number; interval: number }
  /** "I am leaving" (a clean shutdown). */
  | { kind: "leave"; origin: number; node: string };

/** What a bus reports to its cluster. */
export interface BusReceiver {
  /** A message from another node. */
  message(message: BusMessage): void;
  /**
   * The bus went down (`up` false, with why) or came back (`up` true) after
   * having started. Reconnecting is the bus's own business.
   */
  state(up: boolean, error?: Error): void;
}

/** One implementation of the cluster's bus. */
export interface Bus {
  /**
   * Join the cluster: connect, claim the node's name and number, and begin
   * delivering to `receiver`.
   *
   * @returns This node's identity.
   * @throws {Error} One line that says what failed (a bad URL, a refused
   *   connection, failed authentication, a name already in the cluster).
   */
  start(receiver: BusReceiver): Promise<BusIdentity>;
  /**
   * To every other node: `broadcast`, `heartbeat` and `leave` to all,
   * `publish` to those that joined its topic (a bus may send it to all).
   *
   * @returns `false` when the bus is down and the message was not sent.
   */
  publish(message: BusMessage): boolean;
  /**
   * To the node numbered `target` only (`push`, `pushed`).
   *
   * @returns `false` when the bus is down and the message was not sent.
   */
  sendTo(target: number, message: BusMessage): boolean;
  /** This node wants `publish` messages of `topic` (its first subscriber here). */
  join(topic: string): void;
  /** This node no longer wants `topic` (its last subscriber here left). */
  leave(topic: string): void;
  /** Leave the cluster and let go of every resource. */
  close(): Promise<void>;
}

/** The bus of a server alone: there is nobody else to tell. */
export class LocalBus implements Bus {
  readonly #node: string;

  /** @param node The server's name. */
  constructor(node: string) {
    this.#node = node;
  }

  start(): Promise<BusIdentity> {
    return Promise.resolve({ node: this.#node, number: 0 });
  }

  publish(): boolean {
    return true;
  }

  sendTo(): boolean {
    return true;
  }

  join(): void {}

  leave(): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Session ids carry their node's number above this (2^32 sessions per node start). */
export const SESSIONS_PER_NODE = 2 ** 32;

/** The number of the node that holds session `sessionId`. */
export function nodeOfSession(sessionId: number): number {
  return Math.floor(sessionId / SESSIONS_PER_NODE);
}
