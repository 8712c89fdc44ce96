/**
 * tlvkit: TCP message framing, server and client for Node.js, Deno and Bun.
 *
 * Every message is a frame: a message id, a body length, and the body, in
 * network byte order by default (docs/protocol.md#frame-layout):
 *
 * ```text
 *  +---------------+---------------+-------------------------+
 *  |  message id   |  body length  |  body (length bytes)    |
 *  |  u16, big end |  u16, big end |                         |
 *  +---------------+---------------+-------------------------+
 * ```
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "@tlvkit/tlvkit";
 * const decoder = new FrameDecoder();
 * const wire = encodeFrame(1001, new TextEncoder().encode("hi"));
 * for (const frame of decoder.push(wire)) {
 *   console.log(frame.id, new TextDecoder().decode(frame.body)); // 1001 hi
 * }
 * ```
 *
 * @module
 */

export {
  type ByteOrder,
  FrameLayout,
  type FrameLayoutOptions,
  type IdBytes,
  type LengthBytes,
} from "./src/frame_layout.ts";
export { encodeFrame, FrameEncoder } from "./src/frame_encoder.ts";
export { type Frame, type FrameCallback, FrameDecoder } from "./src/frame_decoder.ts";
export { DecoderFailedError, FrameTooLargeError, IncompleteFrameError } from "./src/errors.ts";

export type { CloseReason } from "./src/close_reason.ts";
export { CLOSE_REASONS } from "./src/close_reason.ts";
export type { Clock, TimerHandle } from "./src/clock.ts";
export { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "./src/logger.ts";
export { echo } from "./src/echo.ts";
export { Router } from "./src/router.ts";
export type {
  Handler,
  Request,
  Session,
  SessionCounters,
  SessionOptions,
  SessionState,
} from "./src/session.ts";
export {
  type ErrorContext,
  NoHandlerError,
  serve,
  type Server,
  type PublishOptions,
  type ServerCloseOptions,
  type ServerOptions,
} from "./src/server.ts";
export type { ServerStats } from "./src/server_stats.ts";
export type { TopicOptions } from "./src/topics.ts";
export type { BusStats, ClusterNode, ClusterOptions, ClusterTuning, ServerCluster } from "./src/cluster/cluster.ts";
export type { Bus, BusIdentity, BusMessage, BusReceiver } from "./src/cluster/bus.ts";
export {
  type Client,
  type ClientClose,
  type ClientOptions,
  connect,
  ConnectionClosedError,
  type KeepAliveOptions,
  type RequestOptions,
  RequestTimeoutError,
} from "./src/client.ts";
export type {
  Connection,
  ConnectionHandlers,
  ConnectOptions,
  Listener,
  ListenOptions,
  RuntimeName,
  SocketAddress,
  Transport,
  WorkerSupport,
} from "./src/transport/types.ts";
export { VERSION } from "./src/version.ts";
