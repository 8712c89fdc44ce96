/**
 * Every Node.js internal the Node adapter uses, behind one function:
 * {@link nodeInternals}. Where it returns `undefined` the adapter uses Node's
 * public API instead, and behaves the same (the transport tests run on both
 * paths). Each internal is here because it saves server CPU on an ordinary
 * handler's workload (docs/performance.md#node):
 *
 * - **Reading an accepted socket through `onread`.** With the `onread`
 *   option Node reads into a buffer the caller supplies and calls back
 *   directly, instead of reading into fresh memory and passing each chunk
 *   through the readable stream (`data` events). `net.connect` takes
 *   `onread`, `net.Server` does not: so an accepted socket, created paused
 *   (`pauseOnConnect`) with nothing read, hands its handle to a new
 *   `net.Socket` built with `onread`, as Node's own `onconnection` builds it,
 *   and the server's connection count follows the new socket (`_handle`, the
 *   `handle` option, `server` and `_server`).
 * - **Writing straight to the socket's libuv handle.** `socket.write` passes
 *   every buffer through the writable stream (`writeOrBuffer`, `_write`,
 *   callbacks) before libuv sees it; {@link HandleWriter} hands it to the
 *   handle's `writeBuffer` with a `WriteWrap` request from
 *   `process.binding("stream_wrap")`, as that machinery ends up doing.
 *
 * The public API is used when `nodeInternals()` returns `undefined`: on Bun's
 * and Deno's `node:net` emulations; under `--pending-deprecation`, where
 * `process.binding` would print a deprecation warning; when the environment
 * has `TLVKIT_NODE_PUBLIC_API=1`; and when this Node's binding lacks what is
 * used. Checked on Node 20, 22 and 24.
 *
 * @module
 */

import * as net from "node:net";
import process from "node:process";
import { getSystemErrorName } from "node:util";
import { detectRuntime } from "./detect.ts";

/** The environment variable that makes the Node adapter use only Node's public API, when `"1"`. */
export const PUBLIC_API_ENV = "TLVKIT_NODE_PUBLIC_API";

/** The internals the Node adapter may use; see the module doc. */
export interface NodeInternals {
  /**
   * Rebuild an accepted socket, created paused with nothing read, as one
   * that reads through `onread`.
   *
   * @returns The new socket, or `undefined` when the accepted one has no
   *   handle (never seen).
   */
  withOnRead(accepted: net.Socket, server: net.Server, onread: net.OnReadOpts): net.Socket | undefined;
  /**
   * Writes straight to `socket`'s handle. `onDrained` is called when the
   * writes libuv queued are all done (not after the socket was destroyed).
   *
   * @returns The writer, or `undefined` when the socket has no stream handle.
   */
  handleWriter(socket: net.Socket, onDrained: () => void): HandleWriter | undefined;
}

/** A write request of Node's `stream_wrap` binding, as `node:net` fills it in. */
interface WriteRequest {
  handle: StreamHandle;
  oncomplete: (this: WriteRequest, status: number) => void;
  /** Kept alive while libuv writes it (the native side holds only a pointer). */
  buffer: Uint8Array | null;
  bytes: number;
  writer: HandleWriter;
}

/** The part of a socket's libuv stream handle used for writing. */
interface StreamHandle {
  /** @returns 0, or a negative libuv error code. */
  writeBuffer(request: WriteRequest, bytes: Uint8Array): number;
}

/** Node's `stream_wrap` binding: write requests, and whether the last write was queued. */
interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/** The members of a socket that rebuilding it touches. */
interface InternalSocket {
  _handle: object | null;
  _server?: net.Server | null;
  server?: net.Server | null;
}

/** A libuv write error as `node:net` reports one (`write EPIPE`, with `code`, `errno`, `syscall`). */
function writeError(status: number): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `E${-status}`;
  }
  return Object.assign(new Error(`write ${code}`), { code, errno: status, syscall: "write" });
}

/**
 * Writes to one socket's libuv handle. A write libuv completes at once (the
 * usual case) leaves nothing behind; one it queues keeps its buffer in
 * {@link HandleWriter.backlog} until libuv reports it done. libuv writes
 * queued requests in order, and the socket's `end()` (the stream's shutdown)
 * waits for them. A failed write destroys the socket with the error.
 */
export class HandleWriter {
  readonly #binding: StreamWrapBinding;
  readonly #socket: net.Socket;
  readonly #handle: StreamHandle;
  readonly #onDrained: () => void;
  /** Bytes of queued writes libuv has not finished. */
  #pending = 0;
  /**
   * The request of the last write, which libuv completed at once: Node binds
   * a request to its native write only when libuv queues the write, so one
   * that was never bound serves the next write too (docs/performance.md#node).
   */
  #spare: WriteRequest | undefined;

  constructor(binding: StreamWrapBinding, socket: net.Socket, handle: StreamHandle, onDrained: () => void) {
    this.#binding = binding;
    this.#socket = socket;
    this.#handle = handle;
    this.#onDrained = onDrained;
  }

  /** Bytes handed to {@link HandleWriter.write} that libuv has not written yet. */
  get backlog(): number {
    return this.#pending;
  }

  /**
   * Hand `bytes` to libuv; they are not copied, so they must stay unchanged
   * while {@link HandleWriter.backlog} is above 0.
   *
   * @returns `true` when nothing is left queued; `false` when libuv queued
   *   this write (`onDrained` follows) or it failed (the socket is destroyed).
   */
  write(bytes: Uint8Array): boolean {
    if (bytes.length === 0) return this.#pending === 0;
    const binding = this.#binding;
    let request = this.#spare;
    this.#spare = undefined;
    if (request === undefined) {
      request = new binding.WriteWrap();
      request.handle = this.#handle;
      request.oncomplete = HandleWriter.#onWritten;
      request.writer = this;
      request.buffer = null;
      request.bytes = 0;
    }
    const status = this.#handle.writeBuffer(request, bytes);
    if (status !== 0) {
      this.#socket.destroy(writeError(status));
      return false;
    }
    if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0) {
      this.#spare = request;
      return this.#pending === 0;
    }
    // Queued by libuv: keep the bytes until it is done with them.
    request.buffer = bytes;
    request.bytes = bytes.length;
    this.#pending += bytes.length;
    return false;
  }

  /** libuv finished a queued write (`this` is its request). */
  static #onWritten(this: WriteRequest, status: number): void {
    const writer = this.writer;
    this.buffer = null;
    writer.#pending -= this.bytes;
    if (writer.#socket.destroyed) return;
    if (status < 0) writer.#socket.destroy(writeError(status));
    else if (writer.#pending === 0) writer.#onDrained();
  }
}

/** Rebuild an accepted socket around its handle, reading through `onread` (see {@link NodeInternals.withOnRead}). */
function withOnRead(accepted: net.Socket, server: net.Server, onread: net.OnReadOpts): net.Socket | undefined {
  const internal = accepted as unknown as InternalSocket;
  const handle = internal._handle;
  if (handle === null || typeof handle !== "object") return undefined;
  internal._handle = null;
  const options = { handle, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true, onread };
  const socket = new net.Socket(options as net.SocketConstructorOpts);
  // As Node's onconnection sets them: closing the socket counts down the server's connections.
  const rebuilt = socket as unknown as InternalSocket;
  rebuilt.server = server;
  rebuilt._server = server;
  return socket;
}

/** Whether Node was started with `--pending-deprecation`, under which `process.binding` warns. */
function pendingDeprecation(): boolean {
  const options = `${process.execArgv.join(" ")} ${process.env.NODE_OPTIONS ?? ""}`;
  return options.includes("--pending-deprecation") || process.env.NODE_PENDING_DEPRECATION === "1";
}

/** The internals, when this is Node itself, nothing rules them out and the binding has what is used. */
function findInternals(): NodeInternals | undefined {
  // First: Deno's process.env needs a permission that the rest of the adapter does not.
  if (detectRuntime() !== "node") return undefined;
  if (process.env[PUBLIC_API_ENV] === "1" || pendingDeprecation()) return undefined;
  let binding: Partial<StreamWrapBinding> | undefined;
  try {
    binding = (process as unknown as { binding?: (name: string) => Partial<StreamWrapBinding> }).binding?.("stream_wrap");
  } catch {
    // Not offered by this Node.
  }
  if (
    typeof binding?.WriteWrap !== "function" || !(binding.streamBaseState instanceof Int32Array) ||
    typeof binding.kLastWriteWasAsync !== "number"
  ) {
    return undefined;
  }
  const streamWrap = binding as StreamWrapBinding;
  return {
    withOnRead,
    handleWriter(socket, onDrained) {
      const handle = (socket as unknown as { _handle: Partial<StreamHandle> | null })._handle;
      if (typeof handle?.writeBuffer !== "function") return undefined;
      return new HandleWriter(streamWrap, socket, handle as StreamHandle, onDrained);
    },
  };
}

const INTERNALS = findInternals();

/**
 * The Node internals the adapter may use, or `undefined` where it must keep
 * to Node's public API (see the module doc for when).
 *
 * @returns The internals, the same object on every call.
 */
export function nodeInternals(): NodeInternals | undefined {
  return INTERNALS;
}
