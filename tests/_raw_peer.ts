/**
 * A raw TCP peer for tests: a transport connection that records every byte it
 * receives and behaves like an ordinary client, closing its side once the
 * server has closed its own.
 *
 * @module
 */

import { type Frame, FrameDecoder } from "../mod.ts";
import { loadTransport } from "../src/transport/detect.ts";
import type { Connection } from "../src/transport/types.ts";
import { deferred } from "./_async.ts";

/** A connected raw peer. */
export interface RawPeer {
  /** The connection, to write, pause, end or abort. */
  readonly conn: Connection;
  /** Every chunk received, as received. */
  readonly chunks: Uint8Array[];
  /** Resolves when the server half-closed (this side then ends too). */
  readonly ended: Promise<void>;
  /** Resolves when the connection is fully closed. */
  readonly closed: Promise<void>;
  /** The error the connection closed with, if any (a reset, say). */
  readonly closeError: Error | undefined;
  /** The frames received so far, decoded in the default layout. */
  frames(): Frame[];
}

/** Connect a raw peer to `host:port` with the running runtime's transport. */
export async function rawPeer(port: number, host = "127.0.0.1"): Promise<RawPeer> {
  const conn = await (await loadTransport()).connect({ host, port });
  const chunks: Uint8Array[] = [];
  const ended = deferred();
  const closed = deferred();
  let closeError: Error | undefined;
  conn.start({
    onData: (chunk) => {
      chunks.push(chunk);
    },
    onEnd: () => {
      ended.resolve();
      conn.end();
    },
    onDrain: () => {},
    onClose: (error) => {
      closeError = error;
      closed.resolve();
    },
  });
  return {
    conn,
    chunks,
    ended: ended.promise,
    closed: closed.promise,
    get closeError() {
      return closeError;
    },
    frames: () => {
      const decoder = new FrameDecoder();
      return chunks.flatMap((chunk) => decoder.push(chunk));
    },
  };
}
