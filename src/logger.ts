/**
 * Leveled, one-line-per-event logging.
 *
 * @module
 */

/** Log levels, most severe first. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** Every log level, most severe first. */
export const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];

/**
 * Where a server reports events. Each call is one line.
 *
 * @example
 * ```ts
 * import { createLogger } from "@tlvkit/tlvkit";
 * const logger = createLogger("debug", (line) => console.log(line));
 * logger.info("started");
 * ```
 */
export interface Logger {
  /** Something failed. */
  error(message: string): void;
  /** A limit was hit or something looks wrong. */
  warn(message: string): void;
  /** Start, stop and other rare events. */
  info(message: string): void;
  /** Per-session events (open, close). Never per frame. */
  debug(message: string): void;
}

const noop = (): void => {};

/**
 * A logger that writes lines at `level` and above through `write`, each
 * prefixed with an ISO timestamp and the level.
 *
 * @param level The least severe level written.
 * @param write Receives each line (no trailing newline); defaults to `console.error`.
 * @returns The logger.
 * @throws {RangeError} When the level is unknown.
 * @example
 * ```ts
 * import { createLogger } from "@tlvkit/tlvkit";
 * createLogger("warn").warn("connection limit reached"); // to standard error
 * ```
 */
export function createLogger(level: LogLevel, write: (line: string) => void = (line) => console.error(line)): Logger {
  const rank = LOG_LEVELS.indexOf(level);
  if (rank < 0) throw new RangeError(`Invalid log level "${String(level)}": use error, warn, info or debug`);
  const at = (name: LogLevel) =>
    LOG_LEVELS.indexOf(name) <= rank
      ? (message: string) => write(`${new Date().toISOString()} ${name.toUpperCase().padEnd(5)} ${message}`)
      : noop;
  return { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

/**
 * Logs a recurring event at most once per interval: the first occurrence at
 * once, later ones counted and reported with the next line. Keeps floods
 * (connections refused at the limit, accept failures) to one line a second.
 */
export class ThrottledLog {
  readonly #interval: number;
  #loggedAt = Number.NEGATIVE_INFINITY;
  #suppressed = 0;

  /** @param interval Milliseconds between lines. */
  constructor(interval = 1000) {
    this.#interval = interval;
  }

  /**
   * Write `message` through `write` unless a line went out less than the
   * interval ago; then only count it.
   *
   * @param now The current time in milliseconds.
   * @param write Writes one line.
   * @param message The event.
   */
  log(now: number, write: (line: string) => void, message: string): void {
    if (now - this.#loggedAt < this.#interval) {
      this.#suppressed++;
      return;
    }
    const more = this.#suppressed > 0 ? ` (and ${this.#suppressed} more like it since the last report)` : "";
    write(`${message}${more}`);
    this.#loggedAt = now;
    this.#suppressed = 0;
  }
}
