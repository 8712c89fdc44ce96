/**
 * A scripted transport connection for session tests: the test fires data,
 * end, drain and close events by hand and inspects what the session did.
 *
 * @module
 */

import type { Clock, TimerHandle } from "../src/clock.ts";
import type { Connection, ConnectionHandlers, SocketAddress } from "../src/transport/types.ts";

/** A connection whose events the test drives. */
export class FakeConnection implements Connection {
  readonly remote: SocketAddress = { host: "127.0.0.1", port: 40000 };
  readonly local: SocketAddress = { host: "127.0.0.1", port: 10086 };
  handlers: ConnectionHandlers | undefined;
  readonly writes: Uint8Array[] = [];
  /** With `keepGiven`: the buffers given to `write`, as given (not copies), in order. */
  readonly given: Uint8Array[] = [];
  /** Record `given` (off by default: it keeps every buffer written alive). */
  keepGiven = false;
  /** What `write` returns: `false` simulates a full socket. */
  accepting = true;
  /** Bytes the fake pretends the OS has not taken yet. */
  pending = 0;
  /**
   * Like Deno's adapter: every write is asynchronous (`write` returns
   * `false`), and the bytes are read from the caller's buffer only when
   * `drain()` sends them, so a caller that rewrote it early is caught.
   */
  holdsWrites = false;
  readonly #held: Uint8Array[] = [];
  ended = false;
  aborted = false;
  paused = false;
  pauseCalls = 0;
  noDelay: boolean | undefined;
  /** How many times onClose was delivered. */
  closeEvents = 0;
  /** Calls made after close (write, end...), which must be harmless. */
  callsAfterClose = 0;

  start(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
  }

  write(bytes: Uint8Array): boolean {
    if (this.closeEvents > 0) {
      this.callsAfterClose++;
      return false;
    }
    if (this.keepGiven) this.given.push(bytes);
    if (this.holdsWrites) {
      this.#held.push(bytes);
      this.pending += bytes.length;
      return false;
    }
    // A copy, as the OS takes one: with backlog 0 the caller may reuse `bytes`.
    this.writes.push(bytes.slice());
    if (this.accepting) return true;
    // Part of a backlog: the adapter still holds `bytes` until a drain empties it.
    this.#backlogged.push({ bytes, copy: bytes.slice() });
    this.pending += bytes.length;
    return false;
  }

  /** Buffers in the backlog, with what they held when written. */
  readonly #backlogged: { bytes: Uint8Array; copy: Uint8Array }[] = [];
  /** Backlogged buffers found changed before the backlog emptied (the caller broke the contract). */
  rewrittenInBacklog = 0;

  /** Count the backlogged buffers that no longer hold what was written. */
  checkBacklog(): void {
    for (const { bytes, copy } of this.#backlogged) {
      if (bytes.length !== copy.length || bytes.some((b, i) => b !== copy[i])) this.rewrittenInBacklog++;
    }
  }

  get backlog(): number {
    return this.pending;
  }

  end(): void {
    if (this.closeEvents > 0) this.callsAfterClose++;
    this.ended = true;
  }

  abort(): void {
    if (this.aborted || this.closeEvents > 0) return;
    this.aborted = true;
    this.pending = 0;
    this.checkBacklog();
    this.#backlogged.length = 0;
    queueMicrotask(() => this.close());
  }

  pause(): void {
    if (!this.paused) this.pauseCalls++;
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  setNoDelay(noDelay: boolean): void {
    this.noDelay = noDelay;
  }

  // ---- driving the session ----

  /** Deliver a chunk; returns what `onData` returned (`true`: the chunk may be reused). */
  receive(bytes: Uint8Array): boolean | void {
    return this.handlers!.onData(bytes);
  }

  peerEnd(): void {
    this.handlers!.onEnd();
  }

  /**
   * The OS took part of the backlog: `left` bytes stay, drain fires (an
   * adapter's `onDrain` with a backlog still there).
   */
  partialDrain(left: number): void {
    this.checkBacklog();
    this.pending = left;
    if (left === 0) this.#backlogged.length = 0;
    this.handlers!.onDrain();
  }

  /** The OS took everything: backlog empty, drain fires. */
  drain(): void {
    for (const bytes of this.#held) this.writes.push(bytes.slice());
    this.#held.length = 0;
    this.checkBacklog();
    this.#backlogged.length = 0;
    this.pending = 0;
    this.accepting = true;
    this.handlers!.onDrain();
  }

  /** Deliver onClose, deliberately without the adapter's once-only guard. */
  close(error?: Error & { code?: string }): void {
    this.closeEvents++;
    this.handlers!.onClose(error);
  }

  /** All bytes written so far, joined. */
  written(): Uint8Array {
    const total = this.writes.reduce((n, w) => n + w.length, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const w of this.writes) {
      out.set(w, offset);
      offset += w.length;
    }
    return out;
  }
}

/** A system error with a code, as adapters report them. */
export function systemError(code: string): Error & { code: string } {
  const error = new Error(`simulated ${code}`) as Error & { code: string };
  error.code = code;
  return error;
}

/** A clock that only moves when the test says so. */
export class FakeClock implements Clock {
  #now = 0;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #next = 1;

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + ms, callback });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Timers not yet fired. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Move time forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: { at: number; callback: () => void } | undefined;
      for (const [id, timer] of this.#timers) {
        if (timer.at <= target && (due === undefined || timer.at < due.at)) {
          dueId = id;
          due = timer;
        }
      }
      if (due === undefined || dueId === undefined) break;
      this.#timers.delete(dueId);
      this.#now = due.at;
      due.callback();
    }
    this.#now = target;
  }
}
