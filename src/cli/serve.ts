/**
 * `tlvkit serve`: run the bundled application (PROTOCOL.md §3–4).
 *
 * @module
 */

import { availableParallelism } from "node:os";
import process from "node:process";
import { createBundledApp } from "../bundled_app.ts";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "../logger.ts";
import { serve } from "../server.ts";
import type { ServerStats } from "../server_stats.ts";
import { formatHostPort } from "../transport/_socket_address.ts";
import { detectRuntime } from "../transport/detect.ts";
import { VERSION } from "../version.ts";
import {
  choiceOption,
  integerOption,
  LAYOUT_HELP,
  LAYOUT_OPTIONS,
  layoutFromFlags,
  parseCommandArgs,
  secondsOption,
  STANDARD_HELP,
  STANDARD_OPTIONS,
  answeredHelpOrVersion,
  UsageError,
} from "./options.ts";
import { onStopSignals } from "./stop_signals.ts";
import { MAX_WORKERS, superviseWorkers } from "./workers.ts";

/** `serve --help`. */
export const SERVE_HELP = `Usage: tlvkit serve [options]

Run the tlvkit message server: HELLO (id 1001) answers a JSON greeting, every
other id is echoed, bad input gets an ERROR frame (id 65535). Prints
"listening on HOST:PORT" on standard output when ready; logs go to standard error.
SIGINT or SIGTERM drains in-flight replies and exits 0; a second signal exits at once.

Options:                                                                         [default]
  --host H             address to listen on                                        [127.0.0.1]
  --port P             TCP port; 0 picks a free one                                [10086]
  --drain-timeout S    on SIGINT/SIGTERM, seconds to finish in-flight replies       [5]
  --idle-timeout S     close sessions silent both ways for S seconds (0 = never)   [0]
  --frame-timeout S    close a session whose started frame is not complete
                       within S seconds (slow-drip peers; 0 = never)               [30]
  --max-connections N  sessions open at once; past it new connections are
                       closed at once and logged                                   [10000]
  --high-water-mark N  unsent bytes per session past which the server stops
                       reading from that peer (backpressure)                       [65536]
  --low-water-mark N   unsent bytes below which it reads again                     [32768]
  --hard-limit N       unsent bytes past which a push (not a reply) closes the
                       session with slow-consumer                                  [1048576]
  --workers N          processes sharing the port (0 = one per core); each has
                       its own sessions. SO_REUSEPORT on Deno and Bun (Linux;
                       Deno also needs --allow-run), node:cluster on Node          [1]
  --log-level L        error, warn, info or debug                                  [info]
  --stats-interval S   log a "stats" line (sessions, frames, bytes, queued bytes,
                       closes by reason) at info level every S seconds; 0 = off    [0]
${LAYOUT_HELP}
${STANDARD_HELP}
`;

const SERVE_OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  "drain-timeout": { type: "string" },
  "idle-timeout": { type: "string" },
  "frame-timeout": { type: "string" },
  "max-connections": { type: "string" },
  "high-water-mark": { type: "string" },
  "low-water-mark": { type: "string" },
  "hard-limit": { type: "string" },
  "log-level": { type: "string" },
  "stats-interval": { type: "string" },
  workers: { type: "string" },
  // Set by the supervisor on the processes it starts; not for people.
  "internal-worker": { type: "boolean" },
  ...LAYOUT_OPTIONS,
  ...STANDARD_OPTIONS,
} as const;

function writeLine(stream: NodeJS.WriteStream, line: string): void {
  stream.write(`${line}\n`);
}

/** A logger whose every message starts with `prefix`. */
function prefixed(logger: Logger, prefix: string): Logger {
  return {
    error: (message) => logger.error(prefix + message),
    warn: (message) => logger.warn(prefix + message),
    info: (message) => logger.info(prefix + message),
    debug: (message) => logger.debug(prefix + message),
  };
}

/**
 * Run `serve` until a signal stops it.
 *
 * @param args The arguments after `serve`.
 * @returns The exit status once stopped (0 after a graceful drain).
 */
export async function runServe(args: string[]): Promise<number> {
  const values = parseCommandArgs("serve", args, SERVE_OPTIONS);
  if (answeredHelpOrVersion(values, SERVE_HELP)) return 0;
  const layout = layoutFromFlags(values);
  const host = values.host ?? "127.0.0.1";
  const port = integerOption("port", values.port, 0, 65535) ?? 10086;
  const workersAsked = integerOption("workers", values.workers, 0, MAX_WORKERS) ?? 1;
  const drainTimeout = secondsOption("drain-timeout", values["drain-timeout"]) ?? 5000;
  const idleTimeout = secondsOption("idle-timeout", values["idle-timeout"]) ?? 0;
  const frameTimeout = secondsOption("frame-timeout", values["frame-timeout"]) ?? 30_000;
  const maxConnections = integerOption("max-connections", values["max-connections"], 1, 10_000_000) ?? 10_000;
  const highWaterMark = integerOption("high-water-mark", values["high-water-mark"], 1, 2 ** 31) ?? 64 * 1024;
  const lowWaterMark = integerOption("low-water-mark", values["low-water-mark"], 0, 2 ** 31) ?? Math.min(32 * 1024, highWaterMark);
  const hardLimit = integerOption("hard-limit", values["hard-limit"], 1, 2 ** 40) ?? Math.max(1024 * 1024, highWaterMark);
  if (lowWaterMark > highWaterMark) {
    throw new UsageError(`--low-water-mark ${lowWaterMark} exceeds --high-water-mark ${highWaterMark}`);
  }
  if (hardLimit < highWaterMark) throw new UsageError(`--hard-limit ${hardLimit} is below --high-water-mark ${highWaterMark}`);
  const statsInterval = secondsOption("stats-interval", values["stats-interval"]) ?? 0;
  const level: LogLevel = choiceOption("log-level", values["log-level"], LOG_LEVELS) ?? "info";
  const stderrLogger = createLogger(level, (line) => writeLine(process.stderr, line));

  const isWorker = values["internal-worker"] === true;
  const workers = workersAsked === 0 ? coreCount() : workersAsked;
  if (!isWorker && workers > 1) {
    return await superviseWorkers({ workers, host, port, drainTimeout, args, logger: stderrLogger });
  }
  const logger = isWorker ? prefixed(stderrLogger, `worker ${process.pid}: `) : stderrLogger;

  const app = createBundledApp(layout);
  let served = 0;
  const server = await serve({
    host,
    port,
    reusePort: isWorker,
    idBytes: layout.idBytes,
    lengthBytes: layout.lengthBytes,
    byteOrder: layout.byteOrder,
    maxBody: layout.maxBody,
    idleTimeout,
    frameTimeout,
    maxConnections,
    highWaterMark,
    lowWaterMark,
    hardLimit,
    router: app.router,
    onError: app.onError,
    onSessionOpen: () => {
      served++;
    },
    logger,
  });
  const address = formatHostPort(server.address.host, server.address.port);
  // Signal handlers go in before the ready line, so a signal sent as soon as
  // a supervisor sees "listening on" is always handled.
  const logStats = (): void => logger.info(formatStats(server.stats()));
  const statsTimer = statsInterval > 0 ? setInterval(logStats, statsInterval) : undefined;
  const stopped = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      if (statsTimer !== undefined) {
        clearInterval(statsTimer);
        logStats();
      }
      logger.info(`${why}: draining ${server.sessions.size} session(s), up to ${drainTimeout / 1000} s`);
      server.close({ drainTimeout }).then(() => {
        logger.info(`stopped (served ${served} session(s))`);
        // A worker keeps its handlers, so that a late SIGTERM cannot kill it,
        // and exits below; elsewhere they would keep the process alive on Deno.
        if (!isWorker) removeSignalHandlers();
        resolve(0);
      }, (error: unknown) => {
        logger.error(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
        resolve(1);
      });
    };
    // A worker leaves Ctrl-C to its supervisor, which stops it with SIGTERM.
    const removeSignalHandlers = onStopSignals(logger, (signal) => stop(`received ${signal}`), { ignoreInterrupt: isWorker });
    if (isWorker) watchSupervisor(() => stop("input closed (supervisor stopping or gone)"));
  });
  logger.info(
    `tlvkit ${VERSION} on ${detectRuntime()}: serving on ${address} (max body ${layout.maxBody}, ` +
      `${layout.idBytes}-byte ids, ${layout.lengthBytes}-byte lengths, ${layout.byteOrder}-endian)`,
  );
  writeLine(process.stdout, `listening on ${address}`);
  const status = await stopped;
  // Its standard output is a pipe the supervisor reads, its logs a line each:
  // nothing is lost by exiting at once.
  if (isWorker) process.exit(status);
  return status;
}

/**
 * One log line of counters, `key=value` pairs an operator can grep or feed to
 * a log shipper: `stats open=2 opened=5 queued=0 frames-in=40 frames-out=40
 * bytes-in=1200 bytes-out=1200 closes=peer-closed:3`.
 *
 * @param stats The server's counters.
 * @returns The line, without a newline.
 */
export function formatStats(stats: ServerStats): string {
  const closes = Object.entries(stats.closes).filter(([, count]) => count > 0).map(([reason, count]) => `${reason}:${count}`);
  return `stats open=${stats.openSessions} opened=${stats.sessionsOpened} queued=${stats.queuedBytes} ` +
    `frames-in=${stats.framesIn} frames-out=${stats.framesOut} bytes-in=${stats.bytesIn} bytes-out=${stats.bytesOut} ` +
    `closes=${closes.length > 0 ? closes.join(",") : "none"}`;
}

/** How many workers `--workers 0` means: one per core this process may use. */
function coreCount(): number {
  try {
    return availableParallelism();
  } catch {
    // A runtime without it: the web's count, where there is one.
    return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
  }
}

/**
 * In a worker: stop when standard input ends. The supervisor holds its write
 * end and closes it to stop the worker; the kernel closes it when the
 * supervisor dies however it dies, so no worker outlives its supervisor.
 */
function watchSupervisor(stop: () => void): void {
  let stopping = false;
  const once = (): void => {
    if (stopping) return;
    stopping = true;
    stop();
  };
  process.stdin.on("end", once);
  process.stdin.on("close", once);
  process.stdin.on("error", once);
  process.stdin.resume();
}
