/**
 * The bus between machines: Redis pub/sub, through the `redis` package
 * (node-redis), an optional peer dependency loaded only when a server joins
 * a Redis cluster.
 *
 * Every channel and key starts with the prefix (`tlvkit` by default):
 *
 * ```text
 * tlvkit:all            channel: broadcast, heartbeat, leave
 * tlvkit:node:<number>  channel: push and pushed for one node
 * tlvkit:topic:<topic>  channel: publish, subscribed while a session here wants it
 * tlvkit:node-seq       key: INCR gives each start a new node number
 * tlvkit:name:<node>    key: the number of the live node with that name (expires)
 * ```
 *
 * Two connections: one for commands and publishes, one subscribed (a
 * subscribed Redis connection takes no other commands). Both reconnect with
 * back-off after the start and never queue: while either is down the bus is
 * down, `publish` and `sendTo` return `false`, and the cluster counts drops.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Bus, BusIdentity, BusMessage, BusReceiver } from "./bus.ts";
import { decodeBusMessage, encodeBusMessage } from "./bus_codec.ts";

/** What {@link RedisBus} needs. */
export interface RedisBusOptions {
  /** The Redis server's URL, `redis://` or `rediss://`. */
  url: string;
  /** This node's name. */
  node: string;
  /** Prefix of every channel and key. */
  prefix: string;
}

/** Milliseconds the start may take, connecting included, before it fails. */
const START_TIMEOUT = 5000;
/** Milliseconds a node's name key lives unless refreshed. */
const NAME_TTL = 10_000;
/** Milliseconds between refreshes of the name key. */
const NAME_REFRESH = 3000;
/** First and longest pause between reconnection attempts, in milliseconds. */
const RECONNECT_FIRST = 100;
const RECONNECT_MAX = 5000;
/** Milliseconds `close()` waits for Redis to take the goodbyes before it hangs up. */
const CLOSE_TIMEOUT = 2000;
/** Node numbers must stay below this: a session id is number * 2^32 + a count, below 2^53. */
const MAX_NODE_NUMBER = 2 ** 21;

/** Delete the name key only if it still holds this node's number. */
const RELEASE_NAME = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
/**
 * Keep the name key alive; claim it again if it expired while Redis was out
 * of reach (or restarted empty), and keep the node counter above this node's
 * number so that a Redis that lost its data never hands that number out again.
 */
const REFRESH_NAME = `local v = redis.call('GET', KEYS[1])
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif v ~= ARGV[1] then return 0
else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
return 1`;

/** The bytes node-redis takes and gives (Node's `Buffer`), as far as this file uses them. */
type Bytes = Uint8Array;

type Listener = (message: Bytes, channel: Bytes) => void;

/**
 * The members of a node-redis client this file uses. Declared here rather
 * than taken from the package's types so that the core type-checks (on every
 * runtime) without the optional package installed.
 */
interface RedisClient {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  duplicate(): RedisClient;
  sendCommand(args: ReadonlyArray<string | Bytes>): Promise<unknown>;
  subscribe(channels: string | string[], listener: Listener, bufferMode: true): Promise<void>;
  unsubscribe(channels: string | string[], listener: Listener, bufferMode: true): Promise<void>;
  close(): Promise<void>;
  destroy(): void;
  on(event: "error", listener: (error: Error) => void): unknown;
  on(event: "ready", listener: () => void): unknown;
}

interface RedisClientOptions {
  url: string;
  RESP: 2;
  disableOfflineQueue: boolean;
  socket: {
    connectTimeout: number;
    reconnectStrategy: (retries: number, cause: Error) => number | false;
  };
}

interface RedisModule {
  createClient(options: RedisClientOptions): RedisClient;
}

/**
 * Redis pub/sub as a cluster bus.
 *
 * @example
 * ```ts ignore
 * import { serve } from "@tlvkit/tlvkit";
 * // Needs `npm install redis` and a Redis server.
 * const server = await serve({ port: 0, cluster: { redis: "redis://127.0.0.1:6379", node: "a" } });
 * await server.close();
 * ```
 */
export class RedisBus implements Bus {
  readonly #options: RedisBusOptions;
  readonly #channelAll: string;
  readonly #nameKey: string;
  /** Topics this node wants, with or without a connection. */
  readonly #topics = new Set<string>();
  /** Topics left while their unsubscribe could not reach Redis: unsubscribed again on reconnect. */
  readonly #leftOffline = new Set<string>();
  #receiver: BusReceiver | undefined;
  #publisher: RedisClient | undefined;
  #subscriber: RedisClient | undefined;
  #number = 0;
  #phase: "new" | "starting" | "started" | "closed" = "new";
  #up = false;
  #refresh: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | undefined;
  readonly #listener: Listener = (message) => this.#deliver(message);

  /** @param options Where Redis is, and who this node is. */
  constructor(options: RedisBusOptions) {
    this.#options = options;
    this.#channelAll = `${options.prefix}:all`;
    this.#nameKey = `${options.prefix}:name:${options.node}`;
  }

  /**
   * Connect both clients, take a node number and claim the node's name.
   * Fails with one line, leaving no socket or timer behind.
   */
  async start(receiver: BusReceiver): Promise<BusIdentity> {
    if (this.#phase !== "new") throw new Error("Cannot join the cluster: this bus was started already");
    const url = parseRedisUrl(this.#options.url);
    this.#phase = "starting";
    this.#receiver = receiver;
    const redis = await loadRedis();
    if (redis === undefined) {
      this.#phase = "closed";
      throw new Error(`Cannot join the cluster: the "redis" package is not installed (npm install redis)`);
    }
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      deadline = setTimeout(() => reject(new StartTimeout()), START_TIMEOUT);
    });
    try {
      const joined = this.#join(redis);
      joined.catch(() => {});
      await Promise.race([joined, timedOut]);
    } catch (error) {
      await this.#abandon();
      if (error instanceof NameInUseError) throw new Error(`Cannot join the cluster: node name "${this.#options.node}" is in use by a live node`);
      throw new Error(`Cannot join the cluster at ${url}: ${describe(error)}`);
    } finally {
      clearTimeout(deadline);
    }
    this.#phase = "started";
    this.#up = true;
    this.#refresh = setInterval(() => this.#refreshName(), NAME_REFRESH);
    return { node: this.#options.node, number: this.#number };
  }

  /** On `<prefix>:topic:<topic>` for a `publish`, else on `<prefix>:all`; `false` at once while down. */
  publish(message: BusMessage): boolean {
    const channel = message.kind === "publish" ? this.#topicChannel(message.topic) : this.#channelAll;
    return this.#send(channel, message);
  }

  /** On `<prefix>:node:<target>`; `false` at once while down. */
  sendTo(target: number, message: BusMessage): boolean {
    return this.#send(this.#nodeChannel(target), message);
  }

  /** Subscribe to `<prefix>:topic:<topic>`, now or when the subscriber connects. */
  join(topic: string): void {
    this.#topics.add(topic);
    this.#leftOffline.delete(topic);
    // Offline, the subscribe waits for the connection or fails; `#resubscribe` makes up for a failure.
    this.#subscriber?.subscribe(this.#topicChannel(topic), this.#listener, true).catch(() => {});
  }

  /** Unsubscribe from `<prefix>:topic:<topic>`, now or when the subscriber reconnects. */
  leave(topic: string): void {
    this.#topics.delete(topic);
    const subscriber = this.#subscriber;
    if (subscriber === undefined) return;
    subscriber.unsubscribe(this.#topicChannel(topic), this.#listener, true).catch(() => {
      if (!this.#topics.has(topic)) this.#leftOffline.add(topic);
    });
  }

  /** Release the name, say goodbye and hang up both connections; never throws. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #join(redis: RedisModule): Promise<void> {
    const publisher = redis.createClient({
      url: this.#options.url,
      RESP: 2,
      // Nothing waits for a connection: a bus that is down says so at once.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: START_TIMEOUT,
        reconnectStrategy: (retries) => this.#reconnectDelay(retries),
      },
    });
    this.#publisher = publisher;
    publisher.on("error", (error) => this.#lost(error));
    publisher.on("ready", () => this.#ready());
    await publisher.connect();
    this.#stillStarting();
    const number = Number(await publisher.sendCommand(["INCR", `${this.#options.prefix}:node-seq`]));
    if (!Number.isSafeInteger(number) || number < 1 || number >= MAX_NODE_NUMBER) {
      throw new Error(`node number ${number} from "${this.#options.prefix}:node-seq" is not below ${MAX_NODE_NUMBER} (reset that key while no node runs)`);
    }
    this.#stillStarting();
    this.#number = number;
    const claimed = await publisher.sendCommand(["SET", this.#nameKey, String(number), "NX", "PX", String(NAME_TTL)]);
    this.#stillStarting();
    if (claimed === null) {
      this.#number = 0;
      throw new NameInUseError();
    }
    const subscriber = publisher.duplicate();
    this.#subscriber = subscriber;
    subscriber.on("error", (error) => this.#lost(error));
    subscriber.on("ready", () => this.#ready());
    await subscriber.connect();
    this.#stillStarting();
    await subscriber.subscribe(this.#channels(), this.#listener, true);
  }

  /** Stop a start that timed out: what it would open next would outlive `#abandon`. */
  #stillStarting(): void {
    if (this.#phase !== "starting") throw new StartTimeout();
  }

  /** The pause before reconnection attempt `retries`; `false` (fail, do not retry) before the start ends. */
  #reconnectDelay(retries: number): number | false {
    if (this.#phase !== "started") return false;
    const ceiling = Math.min(RECONNECT_MAX, RECONNECT_FIRST * 2 ** Math.min(retries, 16));
    // Jitter, so that the nodes of a cluster do not all knock at once when Redis is back.
    return Math.round(ceiling / 2 + Math.random() * ceiling / 2);
  }

  /** Every channel this node listens on. */
  #channels(): string[] {
    return [this.#channelAll, this.#nodeChannel(this.#number), ...[...this.#topics].map((topic) => this.#topicChannel(topic))];
  }

  #nodeChannel(number: number): string {
    return `${this.#options.prefix}:node:${number}`;
  }

  #topicChannel(topic: string): string {
    return `${this.#options.prefix}:topic:${topic}`;
  }

  #send(channel: string, message: BusMessage): boolean {
    const publisher = this.#publisher;
    if (this.#phase !== "started" || publisher === undefined || !publisher.isReady) return false;
    const bytes = encodeBusMessage(message);
    // node-redis sends a Buffer as bytes (a Uint8Array would be turned into text).
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // A publish cut off by a lost connection is lost like those made while down.
    publisher.sendCommand(["PUBLISH", channel, buffer]).catch(() => {});
    return true;
  }

  #deliver(message: Bytes): void {
    let decoded: BusMessage;
    try {
      decoded = decodeBusMessage(message);
    } catch {
      // Not a message of ours (someone else publishing on the prefix): dropped.
      return;
    }
    try {
      this.#receiver?.message(decoded);
    } catch {
      // An exception would reach node-redis's reader, which would tear the connection down.
    }
  }

  #lost(error: Error): void {
    if (this.#phase !== "started" || !this.#up) return;
    // node-redis reports other errors too (an error reply nobody awaited): only a lost connection counts.
    if (this.#publisher?.isReady === true && this.#subscriber?.isReady === true) return;
    this.#up = false;
    this.#receiver?.state(false, new Error(describe(error)));
  }

  #ready(): void {
    if (this.#phase !== "started") return;
    const publisher = this.#publisher;
    const subscriber = this.#subscriber;
    if (publisher === undefined || subscriber === undefined) return;
    if (subscriber.isReady) this.#resubscribe(subscriber);
    if (publisher.isReady) this.#refreshName();
    if (this.#up || !publisher.isReady || !subscriber.isReady) return;
    this.#up = true;
    this.#receiver?.state(true);
  }

  /**
   * node-redis subscribes again to what it was subscribed to; a subscribe or
   * unsubscribe that was cut off meanwhile is made up for here (node-redis
   * sends a SUBSCRIBE only for channels it is not subscribed to already).
   */
  #resubscribe(subscriber: RedisClient): void {
    subscriber.subscribe(this.#channels(), this.#listener, true).catch(() => {});
    if (this.#leftOffline.size === 0) return;
    const left = [...this.#leftOffline].filter((topic) => !this.#topics.has(topic));
    this.#leftOffline.clear();
    if (left.length === 0) return;
    subscriber.unsubscribe(left.map((topic) => this.#topicChannel(topic)), this.#listener, true).catch(() => {
      for (const topic of left) if (!this.#topics.has(topic)) this.#leftOffline.add(topic);
    });
  }

  #refreshName(): void {
    const publisher = this.#publisher;
    if (this.#phase !== "started" || publisher === undefined || !publisher.isReady) return;
    publisher.sendCommand([
      "EVAL",
      REFRESH_NAME,
      "2",
      this.#nameKey,
      `${this.#options.prefix}:node-seq`,
      String(this.#number),
      String(NAME_TTL),
    ]).catch(() => {});
  }

  async #shutdown(): Promise<void> {
    const started = this.#phase === "started";
    this.#phase = "closed";
    if (this.#refresh !== undefined) clearInterval(this.#refresh);
    this.#refresh = undefined;
    if (!started) return;
    const publisher = this.#publisher;
    if (publisher?.isReady) {
      await bounded(publisher.sendCommand(["EVAL", RELEASE_NAME, "1", this.#nameKey, String(this.#number)]), CLOSE_TIMEOUT);
    }
    await Promise.all([hangUp(this.#subscriber), hangUp(publisher)]);
    this.#publisher = undefined;
    this.#subscriber = undefined;
  }

  /** After a failed start: give the name back if it was ours, and drop both connections. */
  async #abandon(): Promise<void> {
    this.#phase = "closed";
    const publisher = this.#publisher;
    if (this.#number !== 0 && publisher?.isReady) {
      await bounded(publisher.sendCommand(["EVAL", RELEASE_NAME, "1", this.#nameKey, String(this.#number)]), CLOSE_TIMEOUT);
    }
    for (const client of [this.#subscriber, publisher]) {
      try {
        client?.destroy();
      } catch {
        // closed already
      }
    }
    this.#publisher = undefined;
    this.#subscriber = undefined;
  }
}

/**
 * The `redis` package: from node_modules (Node, Bun, and Deno beside a
 * package.json), else as `npm:redis` (Deno without one, as when tlvkit
 * comes from JSR).
 */
async function loadRedis(): Promise<RedisModule | undefined> {
  try {
    return (await import("redis")) as unknown as RedisModule;
  } catch {
    // not in node_modules
  }
  // A specifier in a variable: type checkers and bundlers leave it alone, and only Deno knows the scheme.
  const npmSpecifier = "npm:redis@^6.4.0";
  try {
    return (await import(npmSpecifier)) as RedisModule;
  } catch {
    return undefined;
  }
}

class NameInUseError extends Error {}

class StartTimeout extends Error {}

/**
 * Check `url` is a `redis:` or `rediss:` URL and return it without its
 * credentials, for messages.
 */
function parseRedisUrl(url: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (parsed === undefined || (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") || parsed.hostname === "") {
    throw new TypeError(`Invalid option "cluster.redis": "${withoutCredentials(String(url))}" is not a redis:// or rediss:// URL`);
  }
  const path = parsed.pathname === "/" ? "" : parsed.pathname;
  return `${parsed.protocol}//${parsed.host}${path}`;
}

function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/, "//***@");
}

/** One line that says why Redis could not be reached or used. */
function describe(error: unknown): string {
  if (error instanceof StartTimeout) return `no answer within ${START_TIMEOUT} ms`;
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : "";
  const name = error instanceof Error ? error.name : "";
  const message = (error instanceof Error ? error.message : String(error)).split("\n")[0]!.trim();
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused (ECONNREFUSED)";
    case "ECONNRESET":
      return "connection reset (ECONNRESET)";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `host not found (${code})`;
    case "ETIMEDOUT":
      return "connection timed out (ETIMEDOUT)";
  }
  if (name === "ConnectionTimeoutError") return `no connection within ${START_TIMEOUT} ms`;
  if (/^(WRONGPASS|NOAUTH)\b/.test(message) || /^ERR .*(AUTH|password)/i.test(message)) return `authentication failed (${message})`;
  return message === "" ? "unknown error" : message;
}

/** Wait for `promise` at most `ms`, ignoring how it ends. */
async function bounded(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  } catch {
    // the caller goes on either way
  } finally {
    clearTimeout(timer);
  }
}

/** Close `client` politely if it is connected (what it sent goes out first), else at once. */
async function hangUp(client: RedisClient | undefined): Promise<void> {
  if (client === undefined) return;
  if (client.isReady) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const closed = client.close().then(() => true, () => false);
    const ok = await Promise.race([closed, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_TIMEOUT)))]);
    clearTimeout(timer);
    if (ok) return;
  }
  try {
    client.destroy();
  } catch {
    // closed already
  }
}
