/**
 * The ceiling for tlvkit on Node.js: a raw, unframed TCP echo server written
 * straight on `node:net` (every chunk read is written back as it is, with
 * `pause`/`drain` backpressure and `TCP_NODELAY`, as tlvkit's adapter sets).
 * `bench/bench.ts --server raw --runtime node` starts it, compiled like
 * tlvkit's Node servers (`node dist/npm/bench/raw-echo/node.js`, see
 * `bench/node-build.ts`), to compare tlvkit's per-frame cost with what the
 * runtime's socket API costs on its own.
 *
 * ```sh
 * node --import tsx bench/raw-echo/node.ts --port 0
 * # listening on 127.0.0.1:PORT      (SIGTERM or SIGINT exits 0)
 * ```
 *
 * @module
 */

import * as net from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "10087" } },
});
const host = values.host;
const port = Number(values.port);
if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
  console.error(`raw-echo: --port must be an integer from 0 to 65535, got "${values.port}"`);
  process.exit(2);
}

const sockets = new Set<net.Socket>();
const server = net.createServer((socket) => {
  sockets.add(socket);
  socket.setNoDelay(true);
  socket.on("data", (chunk: Buffer) => {
    if (!socket.write(chunk)) {
      socket.pause();
      socket.once("drain", () => socket.resume());
    }
  });
  socket.on("error", () => {}); // resets are the peer's business; "close" follows
  socket.on("close", () => sockets.delete(socket));
});

server.on("error", (error: Error) => {
  console.error(`raw-echo: ${error.message}`);
  process.exit(1);
});

server.listen({ host, port, exclusive: true }, () => {
  const address = server.address() as net.AddressInfo;
  process.stdout.write(`listening on ${host}:${address.port}\n`);
});

const stop = (): void => {
  server.close();
  for (const socket of sockets) socket.destroy();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
