/**
 * The bus between the workers of `serve --workers N` (without `--cluster`):
 * no external engine, the supervisor relays. Each worker has one line to its
 * supervisor (a thread's `postMessage`, a process's IPC channel: a
 * {@link WorkerLink}); what a worker publishes, the supervisor hands to every
 * other worker, and what it sends to one node, to that worker only (dropped
 * when that worker is gone). The supervisor gives each worker its node
 * number, unique for the supervisor's life, and its name, `worker-NUMBER`.
 *
 * Messages cross the line encoded by `bus_codec.ts`. A line keeps the order
 * of what is sent on it and the supervisor relays in the order it receives,
 * so one worker's messages arrive in the order it sent them.
 *
 * @module
 */

import type { Bus, BusIdentity, BusMessage, BusReceiver } from "./bus.ts";
import { BusMessageError, decodeBusMessage, encodeBusMessage } from "./bus_codec.ts";

/** A worker's end of its line to the supervisor. */
export interface WorkerLink {
  /**
   * Send an encoded message to worker `target`, or to every other worker
   * when `target` is 0.
   *
   * @returns `false` when the line is down (the supervisor is gone).
   */
  send(target: number, bytes: Uint8Array): boolean;
  /**
   * Begin delivering: `receive` gets each message another worker sent here,
   * `gone` is called once the supervisor is gone.
   */
  open(receive: (bytes: Uint8Array) => void, gone: () => void): void;
  /** Stop delivering and let go of the line. */
  close(): void;
}

/**
 * The node name the supervisor gives worker number `number`.
 *
 * @param number The worker's node number.
 * @returns `worker-NUMBER`.
 */
export function workerNodeName(number: number): string {
  return `worker-${number}`;
}

/** The cluster bus of one worker of `serve --workers N`, over its line to the supervisor. */
export class WorkerBus implements Bus {
  readonly #identity: BusIdentity;
  readonly #link: WorkerLink;
  #up = false;
  #closed = false;

  /**
   * @param number This worker's node number, from the supervisor.
   * @param link Its line to the supervisor.
   */
  constructor(number: number, link: WorkerLink) {
    this.#identity = { node: workerNodeName(number), number };
    this.#link = link;
  }

  start(receiver: BusReceiver): Promise<BusIdentity> {
    if (this.#closed) return Promise.reject(new Error("Cannot join the workers' bus: it is closed"));
    this.#link.open((bytes) => {
      if (this.#closed) return;
      let message: BusMessage;
      try {
        message = decodeBusMessage(bytes);
      } catch (error) {
        // Only this program's workers are on the line: a bad message is a bug, not an attack.
        if (error instanceof BusMessageError) return;
        throw error;
      }
      receiver.message(message);
    }, () => {
      if (!this.#up) return;
      this.#up = false;
      receiver.state(false, new Error("the supervisor is gone"));
    });
    this.#up = true;
    return Promise.resolve(this.#identity);
  }

  publish(message: BusMessage): boolean {
    return this.#send(0, message);
  }

  sendTo(target: number, message: BusMessage): boolean {
    // 0 is "everyone" on the line, and no worker's number.
    return target > 0 && this.#send(target, message);
  }

  // Every worker gets every publish: the supervisor does not track topics, and
  // a worker with no subscriber to a topic delivers it to nobody.
  join(): void {}

  leave(): void {}

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#up = false;
      this.#link.close();
    }
    return Promise.resolve();
  }

  #send(target: number, message: BusMessage): boolean {
    if (!this.#up) return false;
    if (this.#link.send(target, encodeBusMessage(message))) return true;
    this.#up = false;
    return false;
  }
}
