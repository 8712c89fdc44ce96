/**
 * The `serve` stop rule, shared by the single server and the worker
 * supervisor: the first SIGINT or SIGTERM starts a graceful stop, a second one
 * exits at once with 130 (SIGINT) or 143 (SIGTERM).
 *
 * @module
 */

import process from "node:process";
import type { Logger } from "../logger.ts";

/** Options of {@link onStopSignals}. */
export interface StopSignalOptions {
  /**
   * Ignore SIGINT: a worker process leaves Ctrl-C (sent to the whole process
   * group) to its supervisor, which then stops it with SIGTERM.
   * @default {false}
   */
  ignoreInterrupt?: boolean;
  /** Runs just before a second signal exits the process (to kill children, say). */
  beforeExit?: () => void;
}

/**
 * Call `stop` on the first SIGINT or SIGTERM (handled even when the process
 * started with SIGINT ignored); exit at once on the next.
 *
 * @param logger Where the second signal is reported.
 * @param stop Starts the graceful stop.
 * @param options What to ignore, what to do before an abrupt exit.
 * @returns Removes the handlers (on Deno they would keep the process alive):
 * call it once stopped; a signal from then on ends the process the default way.
 */
export function onStopSignals(
  logger: Logger,
  stop: (signal: NodeJS.Signals) => void,
  options: StopSignalOptions = {},
): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (options.ignoreInterrupt && signal === "SIGINT") return;
    if (stopping) {
      logger.warn(`received ${signal} again: exiting at once`);
      options.beforeExit?.();
      process.exit(signal === "SIGINT" ? 130 : 143);
    }
    stopping = true;
    stop(signal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}
