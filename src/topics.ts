/**
 * Topics: which sessions of a server are subscribed to what. A server keeps
 * one registry; {@link Session.subscribe} and {@link Session.unsubscribe} go
 * through it, and {@link Server.publish} delivers to the sessions it lists.
 * The registry tells its owner when a topic gains its first local subscriber
 * and loses its last, so that a cluster bus listens only to topics someone
 * here wants.
 *
 * @module
 */

import type { Session } from "./session.ts";

/** Limits on topics, options of {@link serve}. */
export interface TopicOptions {
  /**
   * Topics one session may be subscribed to at once; a subscription past it
   * throws a `RangeError`.
   * @default {64}
   */
  maxTopicsPerSession?: number;
  /**
   * Longest topic name, in UTF-8 bytes; a longer one throws a `RangeError`.
   * @default {256}
   */
  maxTopicLength?: number;
}

/** Default of {@link TopicOptions.maxTopicsPerSession}. */
export const DEFAULT_MAX_TOPICS_PER_SESSION = 64;
/** Default of {@link TopicOptions.maxTopicLength}. */
export const DEFAULT_MAX_TOPIC_LENGTH = 256;

const utf8 = new TextEncoder();

/** What a registry reports to its owner. */
export interface TopicInterest {
  /** `topic` has its first subscriber here. */
  first(topic: string): void;
  /** `topic` has lost its last subscriber here. */
  last(topic: string): void;
}

const NO_TOPICS: ReadonlySet<string> = new Set();

/** The subscriptions of one server's sessions, both ways. */
export class TopicRegistry {
  readonly #byTopic = new Map<string, Set<Session>>();
  readonly #bySession = new Map<Session, Set<string>>();
  readonly #maxPerSession: number;
  readonly #maxLength: number;
  readonly #interest: TopicInterest | undefined;

  /**
   * @param options Limits (validated here).
   * @param interest Told when a topic gains its first or loses its last subscriber.
   * @throws {RangeError} When a limit is not a positive integer.
   */
  constructor(options: TopicOptions = {}, interest?: TopicInterest) {
    this.#maxPerSession = positive("maxTopicsPerSession", options.maxTopicsPerSession ?? DEFAULT_MAX_TOPICS_PER_SESSION);
    this.#maxLength = positive("maxTopicLength", options.maxTopicLength ?? DEFAULT_MAX_TOPIC_LENGTH);
    this.#interest = interest;
  }

  /**
   * Check a topic name: a non-empty string of at most `maxTopicLength` UTF-8 bytes.
   *
   * @throws {TypeError} When it is not a non-empty string.
   * @throws {RangeError} When it is too long.
   */
  check(topic: unknown): void {
    if (typeof topic !== "string" || topic.length === 0) {
      throw new TypeError(`Invalid topic: ${typeof topic === "string" ? "an empty string" : String(topic)} (a topic is a non-empty string)`);
    }
    // A UTF-16 code unit is at most 3 UTF-8 bytes: encode only when it could be too long.
    if (topic.length * 3 > this.#maxLength) {
      const bytes = utf8.encode(topic).length;
      if (bytes > this.#maxLength) {
        throw new RangeError(`Invalid topic: ${bytes} bytes long, more than maxTopicLength (${this.#maxLength})`);
      }
    }
  }

  /**
   * Subscribe `session` to `topic`.
   *
   * @returns `true` when it was not subscribed yet.
   * @throws {RangeError} When the session holds `maxTopicsPerSession` topics already, or the name is too long.
   */
  subscribe(session: Session, topic: string): boolean {
    this.check(topic);
    let topics = this.#bySession.get(session);
    if (topics?.has(topic)) return false;
    if (topics !== undefined && topics.size >= this.#maxPerSession) {
      throw new RangeError(
        `Cannot subscribe session ${session.id} to "${topic}": it has ${topics.size} topics, the most maxTopicsPerSession allows`,
      );
    }
    if (topics === undefined) this.#bySession.set(session, topics = new Set());
    topics.add(topic);
    let sessions = this.#byTopic.get(topic);
    if (sessions === undefined) {
      this.#byTopic.set(topic, sessions = new Set());
      sessions.add(session);
      this.#interest?.first(topic);
    } else {
      sessions.add(session);
    }
    return true;
  }

  /** @returns `true` when `session` was subscribed to `topic`. */
  unsubscribe(session: Session, topic: string): boolean {
    const topics = this.#bySession.get(session);
    if (topics === undefined || !topics.delete(topic)) return false;
    if (topics.size === 0) this.#bySession.delete(session);
    this.#drop(session, topic);
    return true;
  }

  /** Unsubscribe `session` from everything (it closed). */
  leaveAll(session: Session): void {
    const topics = this.#bySession.get(session);
    if (topics === undefined) return;
    this.#bySession.delete(session);
    for (const topic of topics) this.#drop(session, topic);
  }

  /** The topics `session` is subscribed to (a live view: do not change it). */
  topicsOf(session: Session): ReadonlySet<string> {
    return this.#bySession.get(session) ?? NO_TOPICS;
  }

  /** The sessions subscribed to `topic`, if any. */
  subscribers(topic: string): ReadonlySet<Session> | undefined {
    return this.#byTopic.get(topic);
  }

  /** Topics with at least one subscriber here. */
  get topics(): IterableIterator<string> {
    return this.#byTopic.keys();
  }

  #drop(session: Session, topic: string): void {
    const sessions = this.#byTopic.get(topic);
    if (sessions === undefined) return;
    sessions.delete(session);
    if (sessions.size === 0) {
      this.#byTopic.delete(topic);
      this.#interest?.last(topic);
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Invalid option "${name}": ${String(value)} is not a positive integer`);
  }
  return value;
}
