/**
 * `tlvkit serve`: run the bundled application
 * (docs/protocol.md#the-bundled-application, docs/protocol.md#serve).
 *
 * @module
 */

import {
  DEFAULT_DRAIN_TIMEOUT,
  DEFAULT_FRAME_TIMEOUT,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_PORT,
  defaultHardLimit,
  defaultLowWaterMark,
} from "../_defaults.ts";
import { availableParallelism } from "node:os";
import process from "node:process";
import { createLogger } from "../logger.ts";
import { WorkerBus } from "../cluster/worker_bus.ts";
import { processLink, reportStartFailure } from "./_process_link.ts";
import { parseServeArgs, prefixed, startServer } from "./_serve_config.ts";
import { answeredHelpOrVersion, LAYOUT_HELP, STANDARD_HELP } from "./options.ts";
import { onStopSignals } from "./stop_signals.ts";
import { superviseWorkers } from "./workers.ts";

/** `serve --help`. */
export const SERVE_HELP = `Usage: tlvkit serve [options]

Run the tlvkit message server: HELLO (id 1001) answers a JSON greeting, every
other id is echoed, bad input gets an ERROR frame (id 65535). Prints
"listening on HOST:PORT" on standard output when ready; logs go to standard error.
SIGINT or SIGTERM drains in-flight replies and exits 0; a second signal exits at once.

Options:                                                                         [default]
  --host H             address to listen on                                        [127.0.0.1]
  --port P             TCP port; 0 picks a free one                                [${DEFAULT_PORT}]
  --drain-timeout S    on SIGINT/SIGTERM, seconds to finish in-flight replies       [${DEFAULT_DRAIN_TIMEOUT / 1000}]
  --idle-timeout S     close sessions silent both ways for S seconds (0 = never)   [0]
  --frame-timeout S    close a session whose started frame is not complete
                       within S seconds (slow-drip peers; 0 = never)               [${DEFAULT_FRAME_TIMEOUT / 1000}]
  --max-connections N  sessions open at once; past it new connections are
                       closed at once and logged                                   [${DEFAULT_MAX_CONNECTIONS}]
  --high-water-mark N  unsent bytes per session past which the server stops
                       reading from that peer (backpressure)                       [${DEFAULT_HIGH_WATER_MARK}]
  --low-water-mark N   unsent bytes below which it reads again                     [${defaultLowWaterMark(DEFAULT_HIGH_WATER_MARK)}]
  --hard-limit N       unsent bytes past which a push (not a reply) closes the
                       session with slow-consumer                                  [${defaultHardLimit(DEFAULT_HIGH_WATER_MARK)}]
  --workers N          servers sharing the port (0 = one per core); each has its
                       own sessions. Threads with SO_REUSEPORT on Deno, processes
                       with SO_REUSEPORT on Bun (Linux), node:cluster on Node.
                       Without --cluster, broadcasts, topics and pushes reach
                       every worker's sessions through the supervisor              [1]
  --pubsub             also answer the publish/subscribe ids 65281-65286 (JSON
                       bodies: subscribe, unsubscribe, publish, broadcast, push,
                       whoami; docs/protocol.md); needs --id-bytes 2 or 4          [off]
  --cluster URL        join the cluster of the nodes sharing this Redis server,
                       redis://HOST:PORT: broadcasts, topics and pushes reach
                       their sessions too (at most once)                           [none]
  --node-id NAME       this node's name in the cluster (with --cluster only);
                       with --workers, worker number i joins as NAME-wi
                                                                            [node-xxxxxxxx]
  --log-level L        error, warn, info or debug                                  [info]
  --stats-interval S   log a "stats" line (sessions, frames, bytes, queued bytes,
                       closes by reason) at info level every S seconds; 0 = off    [0]
${LAYOUT_HELP}
${STANDARD_HELP}
`;

function writeLine(stream: NodeJS.WriteStream, line: string): void {
  stream.write(`${line}\n`);
}

/**
 * Run `serve` until a signal stops it.
 *
 * @param args The arguments after `serve`.
 * @returns The exit status once stopped (0 after a graceful drain).
 */
export async function runServe(args: string[]): Promise<number> {
  const config = parseServeArgs(args);
  if (answeredHelpOrVersion(config, SERVE_HELP)) return 0;
  const stderrLogger = createLogger(config.level, (line) => writeLine(process.stderr, line));

  const isWorker = config.internalWorker;
  const workers = config.workers === 0 ? coreCount() : config.workers;
  if (!isWorker && workers > 1) {
    const { host, port, drainTimeout } = config;
    // Every worker joins a --cluster itself, as NAME-wNUMBER: one NAME for them all.
    const workerArgs = config.cluster !== undefined && config.nodeId === undefined
      ? [...args, "--node-id", `node-${crypto.randomUUID().slice(0, 8)}`]
      : args;
    return await superviseWorkers({ workers, host, port, drainTimeout, args: workerArgs, logger: stderrLogger });
  }
  const logger = isWorker ? prefixed(stderrLogger, `worker ${process.pid}: `) : stderrLogger;
  // Without a --cluster of their own, workers share one through the supervisor.
  const link = isWorker && config.internalNode > 0 && config.cluster === undefined ? processLink() : undefined;
  const bus = link === undefined ? undefined : new WorkerBus(config.internalNode, link);
  let server;
  try {
    server = await startServer(config, logger, isWorker, bus);
  } catch (error) {
    // A worker's supervisor says it, once for all workers.
    if (isWorker && await reportStartFailure(error instanceof Error ? error.message : String(error))) process.exit(1);
    throw error;
  }
  // Signal handlers go in before the ready line, so a signal sent as soon as
  // a supervisor sees "listening on" is always handled.
  const stopped = new Promise<number>((resolve) => {
    const stop = (why: string): void => {
      void server.stop(why).then((status) => {
        // A worker keeps its handlers, so that a late SIGTERM cannot kill it,
        // and exits below; elsewhere they would keep the process alive on Deno.
        if (!isWorker) removeSignalHandlers();
        resolve(status);
      });
    };
    // A worker leaves Ctrl-C to its supervisor, which stops it with SIGTERM.
    const removeSignalHandlers = onStopSignals(logger, (signal) => stop(`received ${signal}`), { ignoreInterrupt: isWorker });
    if (isWorker) watchSupervisor(() => stop("input closed (supervisor stopping or gone)"));
  });
  writeLine(process.stdout, `listening on ${server.address}`);
  const status = await stopped;
  // Its standard output is a pipe the supervisor reads, its logs a line each:
  // nothing is lost by exiting at once.
  if (isWorker) process.exit(status);
  return status;
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
