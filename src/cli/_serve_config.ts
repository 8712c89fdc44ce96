/**
 * `serve`'s options, checked, and the server they describe: shared by the
 * single server, worker processes and worker threads (`serve --workers`).
 *
 * Nothing here touches signals, standard streams or the process: a worker
 * thread (`_thread_worker.ts`) runs this module too.
 *
 * @module
 */

import {
  DEFAULT_DRAIN_TIMEOUT,
  DEFAULT_FRAME_TIMEOUT,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_HOST,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_PORT,
  defaultHardLimit,
  defaultLowWaterMark,
} from "../_defaults.ts";
import { createBundledApp } from "../bundled_app.ts";
import type { Bus } from "../cluster/bus.ts";
import type { ClusterOptions } from "../cluster/cluster.ts";
import { createPubSubApp } from "../pubsub_app.ts";
import type { FrameLayout } from "../frame_layout.ts";
import { LOG_LEVELS, type Logger, type LogLevel } from "../logger.ts";
import { serve } from "../server.ts";
import type { ServerStats } from "../server_stats.ts";
import { formatHostPort } from "../transport/_socket_address.ts";
import { detectRuntime } from "../transport/detect.ts";
import { VERSION } from "../version.ts";
import {
  choiceOption,
  integerOption,
  LAYOUT_OPTIONS,
  layoutFromFlags,
  parseCommandArgs,
  secondsOption,
  STANDARD_OPTIONS,
  UsageError,
} from "./options.ts";

/** The most workers `--workers` accepts. */
export const MAX_WORKERS = 256;

/** node:util parseArgs definitions of `serve`'s options. */
export const SERVE_OPTIONS = {
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
  pubsub: { type: "boolean" },
  cluster: { type: "string" },
  "node-id": { type: "string" },
  // Set by the supervisor on the processes it starts; not for people.
  "internal-worker": { type: "boolean" },
  // The worker's number, from the supervisor (threads and processes); not for people.
  "internal-node": { type: "string" },
  ...LAYOUT_OPTIONS,
  ...STANDARD_OPTIONS,
} as const;

/** `serve`'s options, checked. */
export interface ServeConfig {
  layout: FrameLayout;
  host: string;
  port: number;
  /** As asked: 0 means one per core. */
  workers: number;
  drainTimeout: number;
  idleTimeout: number;
  frameTimeout: number;
  maxConnections: number;
  highWaterMark: number;
  lowWaterMark: number;
  hardLimit: number;
  level: LogLevel;
  /** `--stats-interval`, milliseconds; 0 = no stats lines. */
  statsInterval: number;
  /** `--pubsub`: the publish/subscribe ids (docs/protocol.md#publish-and-subscribe). */
  pubsub: boolean;
  /** `--cluster`: the Redis URL of the cluster to join. */
  cluster: string | undefined;
  /** `--node-id`: this node's name in the cluster (a worker's: the prefix of it). */
  nodeId: string | undefined;
  /** `--internal-worker`: a worker process started by a supervisor. */
  internalWorker: boolean;
  /** `--internal-node`: the worker's number, from its supervisor (0: not a worker). */
  internalNode: number;
  help: boolean;
  version: boolean;
}

/**
 * Parse and check `serve`'s arguments.
 *
 * @param args The arguments after `serve`.
 * @returns The checked options.
 * @throws {UsageError} For a bad or unknown option, naming it.
 */
export function parseServeArgs(args: string[]): ServeConfig {
  const values = parseCommandArgs("serve", args, SERVE_OPTIONS);
  const layout = layoutFromFlags(values);
  const highWaterMark = integerOption("high-water-mark", values["high-water-mark"], 1, 2 ** 31) ?? DEFAULT_HIGH_WATER_MARK;
  const lowWaterMark = integerOption("low-water-mark", values["low-water-mark"], 1, 2 ** 31) ?? defaultLowWaterMark(highWaterMark);
  const hardLimit = integerOption("hard-limit", values["hard-limit"], 1, 2 ** 40) ?? defaultHardLimit(highWaterMark);
  if (lowWaterMark > highWaterMark) {
    throw new UsageError(`--low-water-mark ${lowWaterMark} exceeds --high-water-mark ${highWaterMark}`);
  }
  if (hardLimit < highWaterMark) throw new UsageError(`--hard-limit ${hardLimit} is below --high-water-mark ${highWaterMark}`);
  const pubsub = values.pubsub === true;
  if (pubsub && layout.idBytes < 2) {
    throw new UsageError(`--pubsub needs --id-bytes 2 or 4 (its ids are 65281 to 65286), not ${layout.idBytes}`);
  }
  const cluster = values.cluster;
  if (cluster !== undefined && !/^rediss?:\/\/[^\s/]+/.test(cluster)) {
    throw new UsageError(`--cluster must be a Redis URL, redis://HOST:PORT, got "${cluster}"`);
  }
  const nodeId = values["node-id"];
  if (nodeId !== undefined && cluster === undefined) throw new UsageError("--node-id names a node of a cluster: give --cluster too");
  if (nodeId !== undefined && !/^[^\s]{1,100}$/.test(nodeId)) {
    throw new UsageError(`--node-id must be 1 to 100 characters without spaces, got "${nodeId}"`);
  }
  return {
    layout,
    host: values.host ?? DEFAULT_HOST,
    port: integerOption("port", values.port, 0, 65535) ?? DEFAULT_PORT,
    workers: integerOption("workers", values.workers, 0, MAX_WORKERS) ?? 1,
    drainTimeout: secondsOption("drain-timeout", values["drain-timeout"]) ?? DEFAULT_DRAIN_TIMEOUT,
    idleTimeout: secondsOption("idle-timeout", values["idle-timeout"]) ?? 0,
    frameTimeout: secondsOption("frame-timeout", values["frame-timeout"]) ?? DEFAULT_FRAME_TIMEOUT,
    maxConnections: integerOption("max-connections", values["max-connections"], 1, 10_000_000) ?? DEFAULT_MAX_CONNECTIONS,
    highWaterMark,
    lowWaterMark,
    hardLimit,
    level: choiceOption("log-level", values["log-level"], LOG_LEVELS) ?? "info",
    statsInterval: secondsOption("stats-interval", values["stats-interval"]) ?? 0,
    pubsub,
    cluster,
    nodeId,
    internalWorker: values["internal-worker"] === true,
    internalNode: integerOption("internal-node", values["internal-node"], 1, 2 ** 32 - 1) ?? 0,
    help: values.help === true,
    version: values.version === true,
  };
}

/** A logger whose every message starts with `prefix`. */
export function prefixed(logger: Logger, prefix: string): Logger {
  return {
    error: (message) => logger.error(prefix + message),
    warn: (message) => logger.warn(prefix + message),
    info: (message) => logger.info(prefix + message),
    debug: (message) => logger.debug(prefix + message),
  };
}

/** A bundled-app server started by {@link startServer}. */
export interface RunningServer {
  /** `HOST:PORT` as printed in `listening on` (the real port, IPv6 in brackets). */
  readonly address: string;
  /**
   * Drain (within the drain timeout) and close; logs `stopped (served N
   * session(s))`. Later calls return the same promise.
   *
   * @param why Why it stops, for the log.
   * @returns 0 once stopped, 1 when closing failed.
   */
  stop(why: string): Promise<number>;
}

/**
 * Start the bundled application's server as `config` says, and log its start.
 *
 * @param config The checked options.
 * @param logger Where it logs.
 * @param reusePort Share the port with the other workers.
 * @param workerBus The bus to the other workers of `serve --workers`, used
 *   when the options name no cluster of their own.
 * @returns The listening server.
 * @throws {Error} When it cannot listen (port in use, no permission) or
 *   cannot join its cluster.
 */
export async function startServer(config: ServeConfig, logger: Logger, reusePort: boolean, workerBus?: Bus): Promise<RunningServer> {
  const { layout, drainTimeout } = config;
  const pubsubApp = config.pubsub ? createPubSubApp(layout) : undefined;
  const app = pubsubApp ?? createBundledApp(layout);
  let served = 0;
  const server = await serve({
    host: config.host,
    port: config.port,
    reusePort,
    idBytes: layout.idBytes,
    lengthBytes: layout.lengthBytes,
    byteOrder: layout.byteOrder,
    maxBody: layout.maxBody,
    idleTimeout: config.idleTimeout,
    frameTimeout: config.frameTimeout,
    maxConnections: config.maxConnections,
    highWaterMark: config.highWaterMark,
    lowWaterMark: config.lowWaterMark,
    hardLimit: config.hardLimit,
    router: app.router,
    // Its handlers copy what they reply and keep nothing.
    borrowBodies: true,
    onError: app.onError,
    onSessionOpen: () => {
      served++;
    },
    logger,
    ...clusterOf(config, workerBus),
  });
  pubsubApp?.attach(server);
  const address = formatHostPort(server.address.host, server.address.port);
  let stopped: Promise<number> | undefined;
  const clustered = server.cluster.number !== 0;
  const logStats = (): void => logger.info(formatStats(server.stats(), clustered));
  const statsTimer = config.statsInterval > 0 ? setInterval(logStats, config.statsInterval) : undefined;
  logger.info(
    `tlvkit ${VERSION} on ${detectRuntime()}: serving on ${address} (max body ${layout.maxBody}, ` +
      `${layout.idBytes}-byte ids, ${layout.lengthBytes}-byte lengths, ${layout.byteOrder}-endian)`,
  );
  return {
    address,
    stop(why: string): Promise<number> {
      stopped ??= (async () => {
        if (statsTimer !== undefined) {
          clearInterval(statsTimer);
          logStats();
        }
        logger.info(`${why}: draining ${server.sessions.size} session(s), up to ${drainTimeout / 1000} s`);
        try {
          await server.close({ drainTimeout });
        } catch (error) {
          logger.error(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
          return 1;
        }
        logger.info(`stopped (served ${served} session(s))`);
        return 0;
      })();
      return stopped;
    },
  };
}

/** The `cluster` option of `serve()` that `config` asks for, if any. */
function clusterOf(config: ServeConfig, workerBus: Bus | undefined): { cluster?: ClusterOptions } {
  if (config.cluster !== undefined) {
    // A worker of `--workers N --cluster` joins as NAME-wNUMBER (its supervisor gives both).
    const node = config.internalNode > 0 && config.nodeId !== undefined ? `${config.nodeId}-w${config.internalNode}` : config.nodeId;
    return { cluster: node === undefined ? { redis: config.cluster } : { redis: config.cluster, node } };
  }
  return workerBus === undefined ? {} : { cluster: { bus: workerBus } };
}

/**
 * One log line of counters, `key=value` pairs an operator can grep or feed to
 * a log shipper: `stats open=2 opened=5 queued=0 frames-in=40 frames-out=40
 * bytes-in=1200 bytes-out=1200 closes=peer-closed:3 aborted=0 accept-errors=0`.
 *
 * In a cluster (`--cluster`, or a worker of `--workers N`) the bus's
 * counters follow: `bus-published=`, `bus-delivered=`, `bus-dropped=`.
 *
 * @param stats The server's counters.
 * @param clustered The server is a node of a cluster.
 * @returns The line, without a newline.
 */
export function formatStats(stats: ServerStats, clustered = false): string {
  const closes = Object.entries(stats.closes).filter(([, count]) => count > 0).map(([reason, count]) => `${reason}:${count}`);
  const bus = clustered ? ` bus-published=${stats.bus.published} bus-delivered=${stats.bus.delivered} bus-dropped=${stats.bus.dropped}` : "";
  return `stats open=${stats.openSessions} opened=${stats.sessionsOpened} queued=${stats.queuedBytes} ` +
    `frames-in=${stats.framesIn} frames-out=${stats.framesOut} bytes-in=${stats.bytesIn} bytes-out=${stats.bytesOut} ` +
    `closes=${closes.length > 0 ? closes.join(",") : "none"} aborted=${stats.connectionsAborted} accept-errors=${stats.acceptErrors}${bus}`;
}
