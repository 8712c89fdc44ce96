/**
 * The bus between machines: Redis pub/sub, through the `redis` package
 * (node-redis), an optional peer dependency loaded only when a server joins
 * a Redis cluster.
 *
 * @module
 */

import type { Bus, BusIdentity, BusMessage, BusReceiver } from "./bus.ts";

/** What {@link RedisBus} needs. */
export interface RedisBusOptions {
  /** The Redis server's URL. */
  url: string;
  /** This node's name. */
  node: string;
  /** Prefix of every channel and key. */
  prefix: string;
}

/** Redis pub/sub as a cluster bus. */
export class RedisBus implements Bus {
  readonly #options: RedisBusOptions;

  /** @param options Where Redis is, and who this node is. */
  constructor(options: RedisBusOptions) {
    this.#options = options;
  }

  start(_receiver: BusReceiver): Promise<BusIdentity> {
    return Promise.reject(new Error(`Cannot join the cluster at ${this.#options.url}: the Redis bus is not built yet`));
  }

  publish(_message: BusMessage): boolean {
    return false;
  }

  sendTo(_target: number, _message: BusMessage): boolean {
    return false;
  }

  join(_topic: string): void {}

  leave(_topic: string): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }
}
