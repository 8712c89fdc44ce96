/**
 * The ceiling for tlvkit on Deno: a raw, unframed TCP echo server written
 * straight on `Deno.listen`: one read/write loop per connection (read into a
 * 32 KiB buffer of the connection's own — the size Deno's standard library
 * copies with — write all of it back, read again),
 * with `TCP_NODELAY` as tlvkit's adapter sets. `bench/bench.ts --server raw
 * --runtime deno` starts it to compare tlvkit's per-frame cost with what the
 * runtime's socket API costs on its own.
 *
 * ```sh
 * ./node_modules/.bin/deno run --allow-net bench/raw-echo/deno.ts --port 0
 * # listening on 127.0.0.1:PORT      (SIGTERM or SIGINT exits 0)
 * ```
 *
 * `--read-size N` reads into N bytes instead of 32 KiB: with a small N, what
 * an idle connection with a read pending costs Deno itself, the floor under
 * any Deno server's idle sessions (docs/performance.md#idle-sessions).
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The few members of a Deno connection used here. */
interface RawDenoConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(buffer: Uint8Array): Promise<number>;
  close(): void;
  setNoDelay(noDelay?: boolean): void;
}

/** The few members of a Deno listener used here. */
interface RawDenoListener {
  readonly addr: { readonly hostname: string; readonly port: number };
  accept(): Promise<RawDenoConn>;
  close(): void;
}

/** The few members of the Deno global used here. */
interface RawDenoApi {
  readonly args: string[];
  listen(options: { hostname: string; port: number; transport: "tcp" }): RawDenoListener;
  addSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  exit(code: number): never;
}

const Deno = (globalThis as unknown as { Deno?: RawDenoApi }).Deno;
if (Deno === undefined) throw new Error("bench/raw-echo/deno.ts runs on Deno only");

const { values } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "10087" },
    "read-size": { type: "string", default: String(32 * 1024) },
  },
});
const port = Number(values.port);
if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
  console.error(`raw-echo: --port must be an integer from 0 to 65535, got "${values.port}"`);
  Deno.exit(2);
}

const BUFFER_SIZE = Number(values["read-size"]);
if (!(Number.isInteger(BUFFER_SIZE) && BUFFER_SIZE >= 1 && BUFFER_SIZE <= 2 ** 24)) {
  console.error(`raw-echo: --read-size must be an integer from 1 to 16777216, got "${values["read-size"]}"`);
  Deno.exit(2);
}
const conns = new Set<RawDenoConn>();

async function echo(conn: RawDenoConn): Promise<void> {
  conns.add(conn);
  try {
    conn.setNoDelay(true);
    const buffer = new Uint8Array(BUFFER_SIZE);
    for (;;) {
      const read = await conn.read(buffer);
      if (read === null) break;
      let written = 0;
      while (written < read) written += await conn.write(buffer.subarray(written, read));
    }
  } catch {
    // reset or closed underneath: the connection is over either way
  } finally {
    conns.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

function listen(api: RawDenoApi): RawDenoListener {
  try {
    return api.listen({ hostname: values.host, port, transport: "tcp" });
  } catch (error) {
    console.error(`raw-echo: ${error instanceof Error ? error.message : String(error)}`);
    return api.exit(1);
  }
}

const listener = listen(Deno);
console.log(`listening on ${values.host}:${listener.addr.port}`);

const stop = (): void => {
  try {
    listener.close();
  } catch {
    // already closed
  }
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);

for (;;) {
  let conn: RawDenoConn;
  try {
    conn = await listener.accept();
  } catch {
    break; // listener closed
  }
  void echo(conn);
}
