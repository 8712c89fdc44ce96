/**
 * The ceiling for tlvkit on Bun: a raw, unframed TCP echo server written
 * straight on `Bun.listen`. Each chunk is written back in the `data` handler;
 * whatever the kernel does not take at once is kept, in order, and written
 * from the `drain` handler (reading pauses while more than 64 KiB waits), with
 * `TCP_NODELAY` as tlvkit's adapter sets. `bench/bench.ts --server raw
 * --runtime bun` starts it to compare tlvkit's per-frame cost with what the
 * runtime's socket API costs on its own.
 *
 * ```sh
 * ./node_modules/.bin/bun bench/raw-echo/bun.ts --port 0
 * # listening on 127.0.0.1:PORT      (SIGTERM or SIGINT exits 0)
 * ```
 *
 * Two options for measuring what JavaScriptCore charges for what tlvkit does
 * (`bench/bench-ab.ts`; docs/performance.md#bun):
 * `--binary-type arraybuffer` receives each chunk as an `ArrayBuffer` (as
 * tlvkit's Bun adapter asks) and echoes a `Uint8Array` of it; `--views` also
 * cuts one `Uint8Array` view per whole frame of tlvkit's default layout from
 * each chunk (as tlvkit's decoder does for request bodies) and drops it.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";

/** Per-socket state: bytes the kernel has not taken yet. */
interface EchoState {
  pending: Uint8Array[];
  pendingBytes: number;
  paused: boolean;
}

/** The few members of a Bun socket used here. */
interface RawBunSocket {
  data: EchoState;
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  setNoDelay?(noDelay?: boolean): boolean;
}

/** The few members of Bun's listen options used here. */
interface RawBunListenOptions {
  hostname: string;
  port: number;
  socket: {
    open(socket: RawBunSocket): void;
    binaryType?: "buffer" | "arraybuffer";
    data(socket: RawBunSocket, data: Uint8Array | ArrayBuffer): void;
    drain(socket: RawBunSocket): void;
    error(socket: RawBunSocket, error: Error): void;
  };
}

/** The few members of the Bun global used here. */
interface RawBunApi {
  listen(options: RawBunListenOptions): { readonly port: number; stop(closeActiveConnections?: boolean): void };
}

const Bun = (globalThis as unknown as { Bun?: RawBunApi }).Bun;
if (Bun === undefined) throw new Error("bench/raw-echo/bun.ts runs on Bun only");

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "10087" },
    "binary-type": { type: "string", default: "buffer" },
    views: { type: "boolean", default: false },
  },
});
const binaryType = values["binary-type"];
if (binaryType !== "buffer" && binaryType !== "arraybuffer") {
  console.error(`raw-echo: --binary-type must be buffer or arraybuffer, got "${binaryType}"`);
  process.exit(2);
}
const cutViews = values.views === true;
if (cutViews && binaryType !== "arraybuffer") {
  console.error("raw-echo: --views needs --binary-type arraybuffer (views of a Buffer chunk make Bun build its ArrayBuffer first)");
  process.exit(2);
}
const port = Number(values.port);
if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
  console.error(`raw-echo: --port must be an integer from 0 to 65535, got "${values.port}"`);
  process.exit(2);
}

const PAUSE_ABOVE = 64 * 1024;

/** Write queued bytes until the kernel stops taking them. */
function flush(socket: RawBunSocket): void {
  const state = socket.data;
  while (state.pending.length > 0) {
    const head = state.pending[0]!;
    const written = socket.write(head);
    if (written <= 0) return;
    state.pendingBytes -= written;
    if (written < head.length) {
      state.pending[0] = head.subarray(written);
      return;
    }
    state.pending.shift();
  }
}

/** Views cut so far: read once at exit, so that cutting them is not optimised away. */
let viewBytes = 0;

/** Cut a view of each whole frame's body (2-byte id, 2-byte big-endian length), as tlvkit's decoder does. */
function cutFrameViews(buffer: ArrayBuffer, bytes: Uint8Array): void {
  const end = bytes.length;
  let pos = 0;
  while (end - pos >= 4) {
    const length = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    if (end - pos - 4 < length) break;
    viewBytes += new Uint8Array(buffer, pos + 4, length).length;
    pos += 4 + length;
  }
}

let listener: { readonly port: number; stop(closeActiveConnections?: boolean): void };
try {
  listener = Bun.listen({
    hostname: values.host,
    port,
    socket: {
      open(socket) {
        socket.data = { pending: [], pendingBytes: 0, paused: false };
        socket.setNoDelay?.(true);
      },
      binaryType,
      data(socket, received) {
        let data: Uint8Array;
        if (received instanceof ArrayBuffer) {
          data = new Uint8Array(received);
          if (cutViews) cutFrameViews(received, data);
        } else {
          data = received;
        }
        const state = socket.data;
        if (state.pending.length === 0) {
          const written = socket.write(data);
          if (written >= data.length) return;
          const rest = written > 0 ? data.subarray(written) : data; // Bun gives each call a fresh buffer
          state.pending.push(rest);
          state.pendingBytes += rest.length;
        } else {
          state.pending.push(data);
          state.pendingBytes += data.length;
        }
        if (!state.paused && state.pendingBytes > PAUSE_ABOVE) {
          state.paused = true;
          socket.pause();
        }
      },
      drain(socket) {
        flush(socket);
        const state = socket.data;
        if (state.paused && state.pendingBytes <= PAUSE_ABOVE / 2) {
          state.paused = false;
          socket.resume();
        }
      },
      error() {
        // resets are the peer's business; Bun closes the socket
      },
    },
  });
} catch (error) {
  console.error(`raw-echo: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
process.stdout.write(`listening on ${values.host}:${listener.port}\n`);

const stop = (): void => {
  listener.stop(true);
  if (cutViews) process.stderr.write(`cut views of ${viewBytes} body bytes\n`);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
