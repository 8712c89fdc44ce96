/**
 * `serve --workers N`: one supervising process that starts N worker processes
 * sharing the listening port, and owns their lifecycle.
 *
 * - **Sharing the port.** Each worker is this same program (same runtime, same
 *   entry, same options) run with `--internal-worker`, which makes it listen
 *   with `reusePort`. On Deno and Bun that is `SO_REUSEPORT`: every worker
 *   binds the port itself and the kernel spreads new connections over them,
 *   with no process in the data path. Node 20 has no `SO_REUSEPORT`, so there
 *   the supervisor is a `node:cluster` primary: workers are cluster workers,
 *   the primary binds once, accepts, and hands each connection to the next
 *   worker in turn (round-robin; the alternative, the workers all accepting on
 *   one shared socket, lets the busiest worker take most connections on Linux).
 *   The primary only accepts; sessions live in the workers.
 * - **Port 0.** The first worker binds the port asked for; once it reports the
 *   real one, the others (and every replacement) bind that one.
 * - **Readiness.** A worker prints `listening on HOST:PORT` on its standard
 *   output (a pipe to the supervisor) when it listens. The supervisor prints
 *   its own `listening on` line once, after every worker has.
 * - **Crashes.** A worker that exits unasked is logged and replaced after a
 *   back-off (0.1 s, doubling, at most 5 s); when workers have exited unasked
 *   more than {@link CRASH_LIMIT} times within {@link CRASH_WINDOW_MS}, the
 *   supervisor stops them all and exits 1.
 * - **Stopping.** A worker drains and exits when its standard input, a pipe
 *   from the supervisor, ends. On SIGINT or SIGTERM the supervisor closes
 *   every worker's input (each drains its own sessions within the drain
 *   timeout) and exits 0 once all have exited 0; a second signal kills them
 *   and exits at once. The kernel closes the pipes when the supervisor dies,
 *   however it dies, so no worker outlives it. Workers ignore SIGINT (Ctrl-C
 *   reaches the whole process group) and drain on a SIGTERM of their own, as
 *   a single server does.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import cluster from "node:cluster";
import { basename } from "node:path";
import process from "node:process";
import { setTimeout } from "node:timers";
import type { Logger } from "../logger.ts";
import { detectRuntime, loadTransport } from "../transport/detect.ts";
import { onStopSignals } from "./stop_signals.ts";

/** The most workers `--workers` accepts. */
export const MAX_WORKERS = 256;
/** More unasked exits than this within {@link CRASH_WINDOW_MS} stop the server. */
export const CRASH_LIMIT = 5;
/** The window in which unasked exits are counted. */
export const CRASH_WINDOW_MS = 30_000;
/** First and longest pause before a crashed worker is replaced. */
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
/** How long a worker may take to print its `listening on` line. */
const READY_TIMEOUT_MS = 30_000;
/** How long past the drain timeout a stopping worker may take before it is killed. */
const EXIT_GRACE_MS = 3000;

/** What {@link superviseWorkers} needs. */
export interface WorkersPlan {
  /** How many workers (2 or more). */
  workers: number;
  /** The address to listen on. */
  host: string;
  /** The port asked for; 0 picks one. */
  port: number;
  /** The drain timeout each worker applies, in ms. */
  drainTimeout: number;
  /** The `serve` arguments, passed on to every worker. */
  args: string[];
  /** The supervisor's log. */
  logger: Logger;
}

interface Worker {
  readonly process: ChildProcess;
  /** Resolves with the address text of its `listening on` line; rejects when it exits first. */
  readonly ready: Promise<string>;
  /** Resolves with its exit status (128 + n for a signal). */
  readonly exited: Promise<number>;
}

type Launch = (args: string[]) => ChildProcess;

/** The program and arguments that run this same CLI entry again, on this runtime. */
function selfCommand(): [string, string[]] {
  const execPath = process.execPath;
  const entry = process.argv[1];
  const runtime = detectRuntime();
  // A compiled single binary is its own entry (Bun's virtual /$bunfs path, or a deno compile output).
  const compiled = entry === undefined || entry.startsWith("/$bunfs/") || entry.startsWith("B:/~BUN/") ||
    (runtime === "deno" && !/^deno(\.exe)?$/.test(basename(execPath)));
  if (compiled) return [execPath, []];
  if (runtime === "deno") {
    // A worker needs the network only; reusePort is an unstable API.
    return [execPath, ["run", "--allow-net", "--unstable-net", "--no-prompt", "--quiet", entry]];
  }
  return [execPath, [...process.execArgv, entry]];
}

/** A launcher for worker processes: node:cluster on Node, plain child processes elsewhere. */
function launcher(mode: "reuse-port" | "cluster"): Launch {
  const stdio: Array<"pipe" | "inherit" | "ipc"> = ["pipe", "pipe", "inherit"];
  const [program, prefix] = selfCommand();
  if (mode === "cluster") {
    cluster.schedulingPolicy = cluster.SCHED_RR;
    return (args) => {
      cluster.setupPrimary({ exec: prefix.at(-1)!, execArgv: prefix.slice(0, -1), args, stdio: [...stdio, "ipc"] });
      return cluster.fork().process;
    };
  }
  return (args) => spawn(program, [...prefix, ...args], { stdio });
}

function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15 };
  return 128 + (signal === null ? 0 : numbers[signal] ?? 0);
}

function describeExit(status: number): string {
  return status > 128 ? `was killed (status ${status})` : `exited with status ${status}`;
}

function startWorker(launch: Launch, args: string[]): Worker {
  const child = launch(args);
  let resolveReady!: (address: string) => void;
  let rejectReady!: (error: Error) => void;
  const ready = new Promise<string>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {}); // Also reported through `exited`.
  const exited = new Promise<number>((resolve) => {
    child.once("exit", (code, signal) => {
      const status = exitStatus(code, signal);
      rejectReady(new Error(`worker ${child.pid} ${describeExit(status)} before listening`));
      resolve(status);
    });
    child.once("error", (error) => {
      rejectReady(new Error(`cannot start a worker: ${error.message}`));
      resolve(127);
    });
  });
  let text = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    text += chunk;
    const match = /^listening on (.+)$/m.exec(text);
    if (match) {
      text = "";
      resolveReady(match[1]!);
    }
  });
  return { process: child, ready, exited };
}

function kill(worker: Worker, signal: NodeJS.Signals): void {
  const child = worker.process;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    // Not child.kill(): Deno's node:child_process then reports the child as
    // killed by the signal even when it handled it and exited 0.
    process.kill(child.pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Start `plan.workers` worker processes sharing one port, print one
 * `listening on` line once all listen, replace crashed workers, and drain them
 * all on SIGINT/SIGTERM.
 *
 * @param plan The workers, the address, the arguments.
 * @returns The exit status: 0 after a graceful stop.
 * @throws {Error} When this runtime cannot share a port, or the port is in use.
 */
export async function superviseWorkers(plan: WorkersPlan): Promise<number> {
  const { logger } = plan;
  const transport = await loadTransport();
  const support = transport.workerSupport?.() ?? { problem: "this runtime's adapter cannot share a port" };
  if ("problem" in support) throw new Error(`cannot run ${plan.workers} workers: ${support.problem}`);
  if (plan.port !== 0) {
    // Workers bind with SO_REUSEPORT, which would join another server that
    // uses it on this port: check the port is free first.
    const probe = await transport.listen({ host: plan.host, port: plan.port }, (connection) => connection.abort());
    await probe.close();
  }
  const launch = launcher(support.mode);
  const workers = new Set<Worker>();
  const crashes: number[] = [];
  let stopping = false;
  let started = false;
  let failed = false;
  let restartTimers = new Set<ReturnType<typeof setTimeout>>();
  let stopped!: () => void;
  const allStopped = new Promise<void>((resolve) => {
    stopped = resolve;
  });

  const stopAll = (why: string): void => {
    if (stopping) return;
    stopping = true;
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers = new Set();
    logger.info(`${why}: stopping ${workers.size} worker(s), each draining up to ${plan.drainTimeout / 1000} s`);
    // Closing a worker's input asks it to drain and exit. Not SIGTERM: a
    // worker may get that from outside too (a signal to the whole process
    // group, systemd's default), and a second one would make it exit at once.
    for (const worker of workers) worker.process.stdin?.end();
    if (workers.size === 0) stopped();
    const deadline = setTimeout(() => {
      for (const worker of workers) {
        logger.error(`worker ${worker.process.pid} still running after the drain timeout: killing it`);
        failed = true;
        kill(worker, "SIGKILL");
      }
    }, plan.drainTimeout + EXIT_GRACE_MS);
    void allStopped.then(() => clearTimeout(deadline));
  };
  const removeSignalHandlers = onStopSignals(logger, (signal) => stopAll(`received ${signal}`), {
    beforeExit: () => {
      for (const worker of workers) kill(worker, "SIGKILL");
    },
  });

  let workerArgs = ["serve", ...plan.args, "--internal-worker"];
  const spawnOne = (): Worker => {
    const worker = startWorker(launch, workerArgs);
    workers.add(worker);
    void worker.exited.then((status) => {
      workers.delete(worker);
      if (stopping) {
        if (status !== 0) {
          logger.error(`worker ${worker.process.pid} ${describeExit(status)} while stopping`);
          failed = true;
        }
        if (workers.size === 0) stopped();
      } else if (started) {
        replace(worker, status);
      }
      // Before every worker listens, an exit fails the start (see below).
    });
    return worker;
  };
  const replace = (worker: Worker, status: number): void => {
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > CRASH_LIMIT) {
      logger.error(`worker ${worker.process.pid} ${describeExit(status)}; ${crashes.length} workers exited within ` +
        `${CRASH_WINDOW_MS / 1000} s: giving up`);
      failed = true;
      stopAll("crash loop");
      return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (crashes.length - 1));
    logger.error(`worker ${worker.process.pid} ${describeExit(status)}; starting a new one in ${delay} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (stopping) return;
      const next = spawnOne();
      next.ready.then((where) => {
        if (where === address) {
          logger.info(`worker ${next.process.pid} listening, replacing worker ${worker.process.pid}`);
          return;
        }
        // Every worker of a cluster died, taking the primary's port-0 listener with them.
        logger.error(`worker ${next.process.pid} is listening on ${where}, not ${address}: giving up`);
        failed = true;
        stopAll("port lost");
      }, () => {}); // Its exit is handled (and counted) like any other.
    }, delay);
    restartTimers.add(timer);
  };

  const fail = async (error: unknown): Promise<number> => {
    logger.error(`cannot start the workers: ${error instanceof Error ? error.message : String(error)}`);
    stopAll("start-up failed");
    await allStopped;
    removeSignalHandlers();
    return 1;
  };
  // The first worker binds the port asked for; the others bind the one it got.
  let address: string;
  try {
    address = await within(spawnOne().ready);
    // A cluster primary shares one listener among the workers that ask for
    // the same port (0 included), so they all ask for the port as given.
    if (support.mode === "reuse-port") workerArgs = [...workerArgs, "--port", /:(\d+)$/.exec(address)![1]!];
    const others = Array.from({ length: plan.workers - 1 }, () => spawnOne());
    await Promise.all(others.map((worker) => within(worker.ready)));
  } catch (error) {
    return await fail(error);
  }
  started = true;
  if (stopping) {
    await allStopped;
    removeSignalHandlers();
    return failed ? 1 : 0;
  }
  const pids = [...workers].map((worker) => worker.process.pid).join(", ");
  logger.info(`${plan.workers} workers (pids ${pids}) serving on ${address} (${support.mode === "cluster" ? "node:cluster, round-robin" : "SO_REUSEPORT"})`);
  process.stdout.write(`listening on ${address}\n`);
  await allStopped;
  removeSignalHandlers();
  logger.info(failed ? "stopped, with errors" : "stopped");
  return failed ? 1 : 0;
}

/** `ready`, or a rejection when it takes longer than {@link READY_TIMEOUT_MS}. */
async function within(ready: Promise<string>): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`a worker did not listen within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS);
  });
  try {
    return await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
