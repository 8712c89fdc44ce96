/**
 * The program each worker thread of `serve --workers` runs (on Deno). It is
 * not loaded from this file: `scripts/build-thread-worker.ts` bundles it into
 * `src/generated/thread_worker_source.ts`, which the supervisor starts from a `blob:` URL,
 * because Deno needs `--allow-read` to load a worker from a file and `serve`
 * must need `--allow-net` only.
 *
 * It waits for a {@link StartMessage}, serves with `reusePort` (reporting
 * `listening` or `failed`), and on a {@link StopMessage} drains, reports
 * `stopped` and closes. An error that escapes every handler is reported in one
 * line and the worker keeps serving, as a worker process does.
 *
 * @module
 */

import { WorkerBus, type WorkerLink } from "../cluster/worker_bus.ts";
import { createLogger } from "../logger.ts";
import { parseServeArgs, prefixed, type RunningServer, startServer } from "./_serve_config.ts";
import type { StartMessage, SupervisorMessage, WorkerScope } from "./_thread_messages.ts";

const scope = globalThis as unknown as WorkerScope;
let server: RunningServer | undefined;
let starting: Promise<void> = Promise.resolve();
let prefix = "worker: ";
let busReceive: ((bytes: Uint8Array) => void) | undefined;

/** This thread's line to the supervisor: its own messages. A thread cannot outlive its supervisor. */
const link: WorkerLink = {
  send(target, bytes) {
    scope.postMessage({ type: "bus", target, bytes });
    return true;
  },
  open(receive) {
    busReceive = receive;
  },
  close() {
    busReceive = undefined;
  },
};

function text(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function reportEscaped(event: { error?: unknown; reason?: unknown; message?: string; preventDefault(): void }): void {
  event.preventDefault();
  console.error(`tlvkit: ${prefix}internal error: ${text(event.error ?? event.reason ?? event.message)}`);
}
scope.addEventListener("error", reportEscaped);
scope.addEventListener("unhandledrejection", reportEscaped);

async function start(message: StartMessage): Promise<void> {
  prefix = `worker ${message.id}: `;
  try {
    const config = parseServeArgs(message.args);
    if (message.port !== undefined) config.port = message.port;
    const logger = prefixed(createLogger(config.level, (line) => console.error(line)), prefix);
    const bus = config.internalNode > 0 && config.cluster === undefined ? new WorkerBus(config.internalNode, link) : undefined;
    server = await startServer(config, logger, true, bus);
  } catch (error) {
    scope.postMessage({ type: "failed", message: text(error) });
    scope.close();
    return;
  }
  scope.postMessage({ type: "listening", address: server.address });
}

async function stop(): Promise<void> {
  await starting;
  const status = server === undefined ? 0 : await server.stop("asked to stop by the supervisor");
  scope.postMessage({ type: "stopped", status });
  scope.close();
}

scope.addEventListener("message", ({ data }: { data: SupervisorMessage }) => {
  if (data.type === "bus") busReceive?.(data.bytes);
  else if (data.type === "start") starting = start(data);
  else if (data.type === "stop") void stop();
});
