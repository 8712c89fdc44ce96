/**
 * What a supervisor and its worker threads (`serve --workers` on Deno) say to
 * each other through `postMessage`, and the few members of the Web Worker API
 * they use (the project's type checks have no DOM library).
 *
 * @module
 */

/** Supervisor to worker: start serving (`args` are `serve`'s, `port`, when given, replaces theirs). */
export interface StartMessage {
  type: "start";
  /** The worker's number, for its log lines (`worker 2: ...`). */
  id: number;
  args: string[];
  port?: number;
}

/** Supervisor to worker: drain and close. */
export interface StopMessage {
  type: "stop";
}

/** Supervisor to worker: a message another worker put on the workers' bus (`cluster/worker_bus.ts`). */
export interface BusDelivery {
  type: "bus";
  /** The message, as `bus_codec.ts` encodes it. */
  bytes: Uint8Array;
}

/** What the supervisor sends a worker thread. */
export type SupervisorMessage = StartMessage | StopMessage | BusDelivery;

/** Worker to supervisor. */
export type WorkerReport =
  /** Listening on `address` (`HOST:PORT`). */
  | { type: "listening"; address: string }
  /** Could not start (bad options, port in use): the worker closes. */
  | { type: "failed"; message: string }
  /** Drained and closed with exit status `status`: the worker closes. */
  | { type: "stopped"; status: number }
  /** A message for the workers' bus: to worker `target`, or to every other worker when 0. */
  | { type: "bus"; target: number; bytes: Uint8Array };

/** A Web Worker, as the supervisor uses it. */
export interface WebWorker {
  postMessage(message: SupervisorMessage): void;
  terminate(): void;
  addEventListener(type: "message", listener: (event: { data: WorkerReport }) => void): void;
  addEventListener(
    type: "error" | "messageerror",
    listener: (event: { message?: string; error?: unknown; preventDefault(): void }) => void,
  ): void;
}

/** The Web Worker constructor (Deno, Bun, browsers; not a global on Node 20). */
export type WebWorkerConstructor = new (url: string, options: { type: "module"; name?: string }) => WebWorker;

/** The global scope inside a worker, as the worker uses it. */
export interface WorkerScope {
  postMessage(message: WorkerReport): void;
  close(): void;
  addEventListener(type: "message", listener: (event: { data: SupervisorMessage }) => void): void;
  addEventListener(
    type: "error" | "unhandledrejection",
    listener: (event: { error?: unknown; reason?: unknown; message?: string; preventDefault(): void }) => void,
  ): void;
}
