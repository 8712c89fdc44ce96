/**
 * A cluster bus inside one process, for tests of what the cluster promises
 * (delivery, order, pushes, presence, counters) without an engine: every
 * bus of a hub reaches the others, each message a microtask later, copied,
 * in order. The hub can be taken down and brought back, as a bus engine that
 * dies and restarts, and a bus can go silent, as a node that hangs.
 *
 * @module
 */

import type { Bus, BusIdentity, BusMessage, BusReceiver } from "../mod.ts";

/** Buses that reach each other. */
export class MemoryHub {
  readonly #buses = new Map<number, MemoryBus>();
  #next = 1;
  #up = true;

  /** A bus for a node named `node`, numbered when it starts. */
  bus(node: string): MemoryBus {
    return new MemoryBus(this, node);
  }

  /** `false` while the hub is down: nothing is carried. */
  get up(): boolean {
    return this.#up;
  }

  /** Take the hub down (`false`) or bring it back (`true`); every started bus is told. */
  setUp(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    for (const bus of this.#buses.values()) bus.told(up);
  }

  /** @internal */
  register(bus: MemoryBus): number {
    const number = this.#next++;
    this.#buses.set(number, bus);
    return number;
  }

  /** @internal */
  unregister(number: number): void {
    this.#buses.delete(number);
  }

  /** @internal */
  carry(from: MemoryBus, message: BusMessage, target?: number): boolean {
    if (!this.#up || from.silent) return false;
    for (const [number, bus] of this.#buses) {
      if (bus === from || (target !== undefined && number !== target)) continue;
      if (message.kind === "publish" && !bus.joined.has(message.topic)) continue;
      bus.deliver(message);
    }
    return true;
  }
}

function copied(message: BusMessage): BusMessage {
  return "body" in message ? { ...message, body: message.body.slice() } : { ...message };
}

/** One node's bus on a {@link MemoryHub}. */
export class MemoryBus implements Bus {
  readonly #hub: MemoryHub;
  readonly #node: string;
  #number = 0;
  #receiver: BusReceiver | undefined;
  /** Topics this node joined. */
  readonly joined = new Set<string>();
  /** `true`: the node neither sends nor receives (it hangs), though the hub is up. */
  silent = false;

  constructor(hub: MemoryHub, node: string) {
    this.#hub = hub;
    this.#node = node;
  }

  start(receiver: BusReceiver): Promise<BusIdentity> {
    this.#receiver = receiver;
    this.#number = this.#hub.register(this);
    return Promise.resolve({ node: this.#node, number: this.#number });
  }

  publish(message: BusMessage): boolean {
    return this.#hub.carry(this, copied(message));
  }

  sendTo(target: number, message: BusMessage): boolean {
    return this.#hub.carry(this, copied(message), target);
  }

  join(topic: string): void {
    this.joined.add(topic);
  }

  leave(topic: string): void {
    this.joined.delete(topic);
  }

  close(): Promise<void> {
    this.#hub.unregister(this.#number);
    this.#receiver = undefined;
    return Promise.resolve();
  }

  /** @internal */
  deliver(message: BusMessage): void {
    queueMicrotask(() => {
      if (!this.silent) this.#receiver?.message(message);
    });
  }

  /** @internal */
  told(up: boolean): void {
    this.#receiver?.state(up, up ? undefined : new Error("the memory hub went down"));
  }
}
