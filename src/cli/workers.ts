/**
 * `serve --workers N`: one supervisor that starts N workers sharing the
 * listening port, and owns their lifecycle. A worker is a whole tlvkit server
 * with its own sessions; what it runs in depends on the runtime:
 *
 * - **Threads on Deno.** Each worker is a Web Worker (a thread of this
 *   process) listening with `reusePort` (`SO_REUSEPORT`: every worker binds
 *   the port itself and the kernel spreads new connections over them). A
 *   thread inherits this process's permissions, so `--allow-net` is all it
 *   takes, where a worker process would need `--allow-run` and `--allow-env`
 *   too. It runs `_thread_worker.ts`, bundled into a string
 *   (`src/generated/thread_worker_source.ts`) and started from a `blob:` URL: Deno needs
 *   `--allow-read` to start a worker from a file. The supervisor and its
 *   threads talk through messages (`_thread_messages.ts`).
 * - **Processes on Bun and Node.** Each worker is this same program (same
 *   runtime, same entry, same options) run with `--internal-worker`. On Bun it
 *   listens with `reusePort` like a thread does. Node 20 has no
 *   `SO_REUSEPORT`, so there the supervisor is a `node:cluster` primary:
 *   workers are cluster workers, the primary binds once, accepts, and hands
 *   each connection to the next worker in turn (round-robin; the alternative,
 *   the workers all accepting on one shared socket, lets the busiest worker
 *   take most connections on Linux). The primary only accepts.
 * - **Port 0.** The first worker binds the port asked for; once it reports the
 *   real one, the others (and every replacement) bind that one.
 * - **Readiness.** A worker reports `listening on HOST:PORT` (a process on its
 *   standard output, a pipe to the supervisor; a thread in a message). The
 *   supervisor prints its own `listening on` line once, after every worker has.
 * - **Crashes.** A worker that ends unasked is logged and replaced after a
 *   back-off (0.1 s, doubling, at most 5 s); when workers have ended unasked
 *   more than {@link CRASH_LIMIT} times within {@link CRASH_WINDOW_MS}, the
 *   supervisor stops them all and exits 1. A process ends by exiting; a
 *   thread by an error that reaches the supervisor (one it could not report
 *   and survive: its program failing to load or start, say), or by stopping
 *   on its own. An error that escapes every handler is reported in one line
 *   and survived, in a process as in a thread.
 * - **The workers' bus.** Each worker gets a node number, unique for the
 *   supervisor's life (a replacement gets a new one), passed as
 *   `--internal-node`. Without `--cluster`, workers join a cluster whose bus
 *   is the supervisor (`cluster/worker_bus.ts`): a thread sends its bus
 *   messages in `postMessage`s, a process on its IPC channel (base64 in JSON,
 *   `_process_link.ts`); the supervisor hands each to every other worker, or
 *   to the one it names (dropped when that worker is gone), in the order they
 *   came. With `--cluster`, each worker joins that cluster itself.
 * - **Stopping.** On SIGINT or SIGTERM the supervisor asks every worker to
 *   drain (each drains its own sessions within the drain timeout) and exits 0
 *   once all have stopped with status 0; a worker still running past the
 *   drain timeout (plus {@link EXIT_GRACE_MS}) is killed (a thread terminated)
 *   and the exit status is 1. A second signal kills them and exits at once.
 *   A process is asked by closing its standard input (a pipe from the
 *   supervisor), which the kernel also closes when the supervisor dies however
 *   it dies, so no worker outlives it; workers ignore SIGINT (Ctrl-C reaches
 *   the whole process group) and drain on a SIGTERM of their own, as a single
 *   server does. A thread is asked by a message, and cannot outlive its
 *   process.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import cluster from "node:cluster";
import process from "node:process";
import { setTimeout } from "node:timers";
import type { Logger } from "../logger.ts";
import { loadTransport } from "../transport/detect.ts";
import { MAX_WORKERS } from "./_serve_config.ts";
import { isBusEnvelope, isFailureEnvelope } from "./_process_link.ts";
import type { WebWorkerConstructor, WorkerReport } from "./_thread_messages.ts";
import { onStopSignals } from "./stop_signals.ts";

export { MAX_WORKERS };

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
export const EXIT_GRACE_MS = 3000;


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

/** A worker could not start, for the reason it gave (a port in use, a cluster it cannot join). */
export class WorkerStartError extends Error {
  /** @param message The worker's reason, one line. */
  constructor(message: string) {
    super(message);
    this.name = "WorkerStartError";
  }
}

/** How a worker ended. */
export interface WorkerExit {
  /** Its exit status: 0 after a graceful stop (128 + n for a process killed by signal n). */
  status: number;
  /** What happened, for the log: `exited with status 1`, `failed: ...`. */
  text: string;
}

/** A bus message as the supervisor relays it: bytes for a thread, base64 for a process. */
export type BusPayload = Uint8Array | string;

/**
 * Where a worker's bus messages go: to worker `target`, or to every other
 * worker when `target` is 0.
 */
export type BusRelay = (target: number, payload: BusPayload) => void;

/** One worker, process or thread, as the supervisor drives it. */
export interface WorkerHandle {
  /** How the log names it: `worker LABEL` (a pid, or a thread's number). */
  readonly label: string;
  /** Resolves with the address it listens on; rejects when it ends first. */
  readonly ready: Promise<string>;
  /** Resolves once it has ended, however. */
  readonly exited: Promise<WorkerExit>;
  /** Ask it to drain and stop. */
  stop(): void;
  /** End it at once. */
  kill(): void;
  /** Hand it a message of the workers' bus (dropped once it has ended). */
  deliver?(payload: BusPayload): void;
}

/** Starts workers of one kind. */
export interface WorkerLauncher {
  /** What a worker's label is, for the log: `pids` or `threads`. */
  readonly kind: string;
  /** How the port is shared, for the log. */
  readonly sharing: string;
  /** Whether later workers must bind the port the first one got (port 0); false where the primary binds (cluster). */
  readonly bindsFirstPort: boolean;
  /**
   * Start a worker.
   *
   * @param port The port to bind instead of the one asked for.
   * @param node Its node number, unique for the supervisor's life.
   * @param relay Where its bus messages go.
   */
  start(port?: number, node?: number, relay?: BusRelay): WorkerHandle;
}

/** How the supervisor meets the outside world (replaced in tests). */
export interface SupervisorIO {
  /** Print the `listening on` line (standard output). */
  print(line: string): void;
  /**
   * Call `stop` when asked to stop (SIGINT, SIGTERM), `killAll` before an
   * abrupt exit (a second signal).
   *
   * @returns Removes what it installed.
   */
  onStop(stop: (why: string) => void, killAll: () => void): () => void;
}

type Launch = (args: string[]) => ChildProcess;

/** `serve` arguments for one worker: the port the others bound, and its node number. */
function workerArgs(args: string[], port: number | undefined, node: number | undefined): string[] {
  const out = port === undefined ? [...args] : [...args, "--port", String(port)];
  return node === undefined ? out : [...out, "--internal-node", String(node)];
}

/** The program and arguments that run this same CLI entry again, on this runtime. */
function selfCommand(): [string, string[]] {
  const execPath = process.execPath;
  const entry = process.argv[1];
  // A compiled single binary is its own entry (Bun's virtual /$bunfs path).
  const compiled = entry === undefined || entry.startsWith("/$bunfs/") || entry.startsWith("B:/~BUN/");
  if (compiled) return [execPath, []];
  return [execPath, [...process.execArgv, entry]];
}

/** Starts worker processes: node:cluster workers on Node, plain child processes elsewhere. */
function processLauncher(mode: "reuse-port" | "cluster", serveArgs: string[]): WorkerLauncher {
  // The IPC channel carries the workers' bus (a cluster worker has one anyway).
  const stdio: Array<"pipe" | "inherit" | "ipc"> = ["pipe", "pipe", "inherit", "ipc"];
  const [program, prefix] = selfCommand();
  let launch: Launch;
  if (mode === "cluster") {
    cluster.schedulingPolicy = cluster.SCHED_RR;
    launch = (args) => {
      cluster.setupPrimary({ exec: prefix.at(-1)!, execArgv: prefix.slice(0, -1), args, stdio });
      return cluster.fork().process;
    };
  } else {
    launch = (args) => spawn(program, [...prefix, ...args], { stdio });
  }
  const args = ["serve", ...serveArgs, "--internal-worker"];
  return {
    kind: "pids",
    sharing: mode === "cluster" ? "node:cluster, round-robin" : "SO_REUSEPORT, one process per worker",
    // A cluster primary shares one listener among the workers that ask for
    // the same port (0 included), so they all ask for the port as given.
    bindsFirstPort: mode === "reuse-port",
    start: (port, node, relay) => startProcess(launch, workerArgs(args, port, node), relay),
  };
}

function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15 };
  return 128 + (signal === null ? 0 : numbers[signal] ?? 0);
}

function describeExit(status: number): string {
  return status > 128 ? `was killed (status ${status})` : `exited with status ${status}`;
}

/** A ready promise settled from outside; its rejection is also reported through `exited`. */
function readiness(): { ready: Promise<string>; resolve: (address: string) => void; reject: (error: Error) => void } {
  let resolve!: (address: string) => void;
  let reject!: (error: Error) => void;
  const ready = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  ready.catch(() => {});
  return { ready, resolve, reject };
}

function startProcess(launch: Launch, args: string[], relay: BusRelay | undefined): WorkerHandle {
  const child = launch(args);
  const { ready, resolve: resolveReady, reject: rejectReady } = readiness();
  let failure: string | undefined;
  child.on("message", (message: unknown) => {
    if (relay !== undefined && isBusEnvelope(message)) relay(message.target ?? 0, message.tlvkitBus);
    else if (isFailureEnvelope(message)) {
      failure = message.tlvkitFailed;
      rejectReady(new WorkerStartError(failure));
    }
  });
  // A worker that dies mid-send closes the channel: nothing to report, its exit is.
  child.on("error", () => {});
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once("exit", (code, signal) => {
      const status = exitStatus(code, signal);
      rejectReady(new Error(`worker ${child.pid} ${describeExit(status)} before listening`));
      resolve({ status, text: failure === undefined ? describeExit(status) : `failed: ${failure}` });
    });
    child.once("error", (error) => {
      rejectReady(new Error(`cannot start a worker: ${error.message}`));
      resolve({ status: 127, text: `could not start: ${error.message}` });
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
  const signal = (name: NodeJS.Signals): void => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    try {
      // Not child.kill(): Deno's node:child_process then reports the child as
      // killed by the signal even when it handled it and exited 0.
      process.kill(child.pid, name);
    } catch {
      // Already gone.
    }
  };
  return {
    label: String(child.pid),
    ready,
    exited,
    // Closing a worker's input asks it to drain and exit. Not SIGTERM: a
    // worker may get that from outside too (a signal to the whole process
    // group, systemd's default), and a second one would make it exit at once.
    stop: () => child.stdin?.end(),
    kill: () => signal("SIGKILL"),
    deliver: (payload) => {
      if (!child.connected || typeof payload !== "string") return;
      try {
        child.send({ tlvkitBus: payload });
      } catch {
        // Gone meanwhile: dropped, as the bus allows.
      }
    },
  };
}

/** One line saying what a worker's error event reports (Deno: `Uncaught Error: ...`; Bun: a code frame, then `error: ...`). */
function errorText(event: { message?: string; error?: unknown }): string {
  if (event.error instanceof Error) return event.error.message;
  const lines = (event.message ?? String(event.error)).split("\n").map((line) => line.trim()).filter(Boolean);
  return lines.find((line) => /error: /i.test(line)) ?? lines[0] ?? "unknown error";
}

/**
 * Starts worker threads (Web Workers) running `source`, the bundled
 * `_thread_worker.ts`, from a `blob:` URL, which needs no permission on Deno.
 *
 * @param serveArgs The `serve` arguments, passed on to every worker.
 * @param source The worker's program, one ES module.
 * @returns The launcher.
 * @throws {Error} When this runtime has no Web Workers.
 */
export function threadLauncher(serveArgs: string[], source: string): WorkerLauncher {
  const Worker = (globalThis as { Worker?: WebWorkerConstructor }).Worker;
  if (Worker === undefined) throw new Error("this runtime has no Web Workers");
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  let count = 0;
  return {
    kind: "threads",
    sharing: "SO_REUSEPORT, one thread per worker",
    bindsFirstPort: true,
    start(port?: number, node?: number, relay?: BusRelay): WorkerHandle {
      const id = ++count;
      const worker = new Worker(url, { type: "module", name: `tlvkit worker ${id}` });
      const { ready, resolve: resolveReady, reject: rejectReady } = readiness();
      let ended = false;
      let resolveExited!: (exit: WorkerExit) => void;
      const exited = new Promise<WorkerExit>((resolve) => {
        resolveExited = resolve;
      });
      const end = (exit: WorkerExit): void => {
        if (ended) return;
        ended = true;
        worker.terminate();
        rejectReady(new Error(`worker ${id} ${exit.text} before listening`));
        resolveExited(exit);
      };
      worker.addEventListener("message", ({ data }: { data: WorkerReport }) => {
        if (data.type === "bus") relay?.(data.target, data.bytes);
        else if (data.type === "listening") resolveReady(data.address);
        else if (data.type === "stopped") end({ status: data.status, text: `stopped with status ${data.status}` });
        else if (data.type === "failed") {
          rejectReady(new WorkerStartError(data.message));
          end({ status: 1, text: `failed: ${data.message}` });
        }
      });
      worker.addEventListener("error", (event) => {
        // Handled here: unhandled, Deno would rethrow it in this thread.
        event.preventDefault();
        end({ status: 1, text: `failed: ${errorText(event)}` });
      });
      worker.addEventListener("messageerror", (event) => {
        event.preventDefault();
        end({ status: 1, text: "failed: sent a message that cannot be read" });
      });
      const args = workerArgs(serveArgs, undefined, node);
      worker.postMessage(port === undefined ? { type: "start", id, args } : { type: "start", id, args, port });
      return {
        label: String(id),
        ready,
        exited,
        stop: () => {
          if (!ended) worker.postMessage({ type: "stop" });
        },
        kill: () => end({ status: 1, text: "was terminated" }),
        deliver: (payload) => {
          if (!ended && payload instanceof Uint8Array) worker.postMessage({ type: "bus", bytes: payload });
        },
      };
    },
  };
}

/**
 * Start `plan.workers` workers sharing one port, print one `listening on`
 * line once all listen, replace crashed workers, and drain them all on
 * SIGINT/SIGTERM.
 *
 * @param plan The workers, the address, the arguments.
 * @returns The exit status: 0 after a graceful stop.
 * @throws {Error} When this runtime cannot share a port, or the port is in use;
 *   a {@link WorkerStartError} when a worker could not start.
 */
export async function superviseWorkers(plan: WorkersPlan): Promise<number> {
  const transport = await loadTransport();
  const support = transport.workerSupport?.() ?? { problem: "this runtime's adapter cannot share a port" };
  if ("problem" in support) throw new Error(`cannot run ${plan.workers} workers: ${support.problem}`);
  // Workers bind with SO_REUSEPORT, which would join another server that
  // uses it on this port: check the port is free first (and that listening
  // is allowed at all, which a worker could only report in a log line).
  const probe = await transport.listen({ host: plan.host, port: plan.port }, (connection) => connection.abort());
  await probe.close();
  const launcher = support.threads === true
    ? threadLauncher(plan.args, (await import("../generated/thread_worker_source.ts")).THREAD_WORKER_SOURCE)
    : processLauncher(support.mode, plan.args);
  return await supervise(plan, launcher, {
    print: (line) => process.stdout.write(`${line}\n`),
    onStop: (stop, killAll) => onStopSignals(plan.logger, (signal) => stop(`received ${signal}`), { beforeExit: killAll }),
  });
}

/**
 * The supervisor itself, whatever the workers run in.
 *
 * @param plan The workers, the address, the drain timeout.
 * @param launcher Starts a worker.
 * @param io Where the ready line goes, what stops it.
 * @returns The exit status: 0 after a graceful stop, 1 when a worker failed to
 * start or to stop, or kept crashing.
 * @throws {WorkerStartError} When a worker could not start and said why (the
 *   other workers are stopped first): the caller reports it.
 */
export async function supervise(plan: WorkersPlan, launcher: WorkerLauncher, io: SupervisorIO): Promise<number> {
  const { logger } = plan;
  const workers = new Set<WorkerHandle>();
  const crashes: number[] = [];
  let stopping = false;
  let started = false;
  let failed = false;
  let restartTimers = new Set<ReturnType<typeof setTimeout>>();
  let stopped!: () => void;
  const allStopped = new Promise<void>((resolve) => {
    stopped = resolve;
  });

  // Set when the start failed for a reason the caller reports: the workers' ends are no news then.
  let quiet = false;
  const stopAll = (why: string, quietly = false): void => {
    if (stopping) return;
    stopping = true;
    quiet = quietly;
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers = new Set();
    if (!quietly) logger.info(`${why}: stopping ${workers.size} worker(s), each draining up to ${plan.drainTimeout / 1000} s`);
    for (const worker of workers) worker.stop();
    if (workers.size === 0) stopped();
    const deadline = setTimeout(() => {
      for (const worker of workers) {
        logger.error(`worker ${worker.label} still running after the drain timeout: killing it`);
        failed = true;
        worker.kill();
      }
    }, plan.drainTimeout + EXIT_GRACE_MS);
    void allStopped.then(() => clearTimeout(deadline));
  };
  const removeStopHandlers = io.onStop((why) => stopAll(why), () => {
    for (const worker of workers) worker.kill();
  });

  // A worker that ends before every worker listens fails the start, even
  // one that was listening already.
  let failStart!: (error: Error) => void;
  const earlyEnd = new Promise<never>((_, reject) => {
    failStart = reject;
  });
  earlyEnd.catch(() => {});
  let port: number | undefined;
  // The workers' bus: node numbers are never reused while the supervisor lives.
  const byNode = new Map<number, WorkerHandle>();
  let nextNode = 1;
  const relay = (from: number, target: number, payload: BusPayload): void => {
    if (target !== 0) {
      byNode.get(target)?.deliver?.(payload);
      return;
    }
    for (const [node, worker] of byNode) if (node !== from) worker.deliver?.(payload);
  };
  const startOne = (): WorkerHandle => {
    const node = nextNode++;
    const worker = launcher.start(port, node, (target, payload) => relay(node, target, payload));
    workers.add(worker);
    byNode.set(node, worker);
    void worker.exited.then((exit) => {
      workers.delete(worker);
      byNode.delete(node);
      if (stopping) {
        if (exit.status !== 0 && !quiet) {
          logger.error(`worker ${worker.label} ${exit.text} while stopping`);
          failed = true;
        }
        if (workers.size === 0) stopped();
      } else if (started) {
        replace(worker, exit);
      } else {
        failStart(new Error(`worker ${worker.label} ${exit.text} before every worker listened`));
      }
    });
    return worker;
  };
  const replace = (worker: WorkerHandle, exit: WorkerExit): void => {
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > CRASH_LIMIT) {
      logger.error(`worker ${worker.label} ${exit.text}; ${crashes.length} workers ended within ` +
        `${CRASH_WINDOW_MS / 1000} s: giving up`);
      failed = true;
      stopAll("crash loop");
      return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (crashes.length - 1));
    logger.error(`worker ${worker.label} ${exit.text}; starting a new one in ${delay} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (stopping) return;
      const next = startOne();
      next.ready.then((where) => {
        if (where === address) {
          logger.info(`worker ${next.label} listening, replacing worker ${worker.label}`);
          return;
        }
        // Every worker of a cluster died, taking the primary's port-0 listener with them.
        logger.error(`worker ${next.label} is listening on ${where}, not ${address}: giving up`);
        failed = true;
        stopAll("port lost");
      }, () => {}); // Its exit is handled (and counted) like any other.
    }, delay);
    restartTimers.add(timer);
  };

  const finish = async (): Promise<number> => {
    await allStopped;
    removeStopHandlers();
    return failed ? 1 : 0;
  };
  // The first worker binds the port asked for; the others bind the one it got.
  let address: string;
  try {
    address = await within(startOne().ready);
    if (launcher.bindsFirstPort) port = Number(/:(\d+)$/.exec(address)![1]);
    const others = Array.from({ length: plan.workers - 1 }, () => startOne());
    await Promise.race([Promise.all(others.map((worker) => within(worker.ready))), earlyEnd]);
  } catch (error) {
    if (error instanceof WorkerStartError) {
      // The workers' own reason, said once by the caller, as a single server says it.
      stopAll("start-up failed", true);
      await finish();
      throw error;
    }
    logger.error(`cannot start the workers: ${error instanceof Error ? error.message : String(error)}`);
    stopAll("start-up failed");
    await finish();
    return 1;
  }
  started = true;
  if (stopping) return await finish();
  const labels = [...workers].map((worker) => worker.label).join(", ");
  logger.info(`${plan.workers} workers (${launcher.kind} ${labels}) serving on ${address} (${launcher.sharing})`);
  io.print(`listening on ${address}`);
  const status = await finish();
  logger.info(status === 0 ? "stopped" : "stopped, with errors");
  return status;
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
