/**
 * Time, injectable: sessions and servers take a clock so that tests of
 * timeouts need no sleeps (like Netty's overridable ticks in `IdleStateHandler`).
 *
 * @module
 */

/** An opaque timer handle. */
export type TimerHandle = unknown;

/**
 * The time source and timer service that sessions use.
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * const handle = systemClock.setTimeout(() => console.log("tick"), 10);
 * systemClock.clearTimeout(handle);
 * ```
 */
export interface Clock {
  /** Milliseconds since an arbitrary origin, never going backwards. */
  now(): number;
  /** Run `callback` once after `ms` milliseconds. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancel a timer; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `performance.now()` and the runtime's timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(callback: () => void, ms: number): TimerHandle {
    return setTimeout(callback, ms);
  },
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
