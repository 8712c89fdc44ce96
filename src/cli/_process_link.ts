/**
 * The line between a worker process of `serve --workers N` (Bun and Node)
 * and its supervisor: the IPC channel both sides open (`process.send` here,
 * `child.send` there). The channel carries JSON, so a bus message travels as
 * base64 in a {@link BusEnvelope}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import type { WorkerLink } from "../cluster/worker_bus.ts";

/** A bus message on a worker's IPC channel, either way. */
export interface BusEnvelope {
  /** The encoded message, base64. */
  tlvkitBus: string;
  /** Worker to supervisor: the node it is for; 0 for every other worker. */
  target?: number;
}

/** Whether `value`, from an IPC channel, is a {@link BusEnvelope}. */
export function isBusEnvelope(value: unknown): value is BusEnvelope {
  return typeof value === "object" && value !== null && typeof (value as BusEnvelope).tlvkitBus === "string";
}

/** A worker's start-up failure, worker to supervisor: the supervisor reports it, in one line. */
export interface FailureEnvelope {
  /** What failed, one line. */
  tlvkitFailed: string;
}

/** Whether `value`, from an IPC channel, is a {@link FailureEnvelope}. */
export function isFailureEnvelope(value: unknown): value is FailureEnvelope {
  return typeof value === "object" && value !== null && typeof (value as FailureEnvelope).tlvkitFailed === "string";
}

/**
 * Tell the supervisor why this worker could not start, so that it says it
 * once rather than every worker saying it.
 *
 * @param message What failed.
 * @returns Resolves to `true` once sent, `false` when there is no supervisor to tell.
 */
export function reportStartFailure(message: string): Promise<boolean> {
  if (typeof process.send !== "function" || !process.connected) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 2000);
    try {
      process.send!({ tlvkitFailed: message } satisfies FailureEnvelope, undefined, {}, (error: Error | null) => {
        clearTimeout(timer);
        resolve(error === null || error === undefined);
      });
    } catch {
      clearTimeout(timer);
      resolve(false);
    }
  });
}

/**
 * This process's line to its supervisor, when it has an IPC channel.
 *
 * @returns The link, or `undefined` when the process was started without one.
 */
export function processLink(): WorkerLink | undefined {
  if (typeof process.send !== "function") return undefined;
  let listener: ((value: unknown) => void) | undefined;
  let onGone: (() => void) | undefined;
  return {
    send(target, bytes) {
      if (!process.connected) return false;
      const envelope: BusEnvelope = { tlvkitBus: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64"), target };
      try {
        process.send!(envelope);
        return true;
      } catch {
        return false;
      }
    },
    open(receive, gone) {
      listener = (value) => {
        if (isBusEnvelope(value)) receive(Buffer.from(value.tlvkitBus, "base64"));
      };
      onGone = gone;
      process.on("message", listener);
      process.once("disconnect", onGone);
    },
    close() {
      if (listener !== undefined) process.off("message", listener);
      if (onGone !== undefined) process.off("disconnect", onGone);
      listener = undefined;
      onGone = undefined;
    },
  };
}
