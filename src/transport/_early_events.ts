/**
 * Events of a connection that happen before `start()` gives it its handlers
 * (data, end, drain, close), kept and delivered in order once it does, as
 * `Connection.start` promises. Pure; shared by the adapters.
 *
 * ```ts ignore
 * if (this.#handlers === undefined) this.#early.add(() => this.#handlers!.onEnd());
 * // ...and in start(handlers), once this.#handlers is set:
 * this.#early.replay(() => this.#closed, (error) => this.#fail(error));
 * ```
 *
 * @module
 */

const NO_EVENTS: ReadonlyArray<() => void> = [];

/** Calls of a connection's handlers kept for `start()`. */
export class EarlyEvents {
  /** Made on the first event: most connections start before anything happens. */
  #events: Array<() => void> | undefined;
  #close: (() => void) | undefined;

  /** Keep `event`, a call of one of the handlers, for {@link EarlyEvents.replay}. */
  add(event: () => void): void {
    (this.#events ??= []).push(event);
  }

  /** Keep the close: delivered last, once, whatever the events before it do. */
  addClose(close: () => void): void {
    this.#close = close;
  }

  /**
   * Deliver what was kept, in order, then forget it. A handler that throws
   * ends the replay (`onThrow` gets what it threw), and so does one that
   * closes the connection (`closed()` turns `true`; that close reports
   * itself); events after it are swallowed, as after any close. The close
   * kept, if any, comes last, after the events before it or after the one
   * that threw.
   *
   * @param closed Whether the connection is closed now.
   * @param onThrow Gets what a handler threw.
   */
  replay(closed: () => boolean, onThrow: (error: unknown) => void): void {
    const events = this.#events ?? NO_EVENTS;
    const close = this.#close;
    this.#events = this.#close = undefined;
    for (const event of events) {
      // With a close kept, the connection was closed all along: only a throw ends the replay.
      if (close === undefined && closed()) break;
      try {
        event();
      } catch (error) {
        onThrow(error);
        break;
      }
    }
    close?.();
  }
}
