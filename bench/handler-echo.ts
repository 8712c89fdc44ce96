/**
 * The workload real applications run: a tlvkit server whose replies come from
 * an ordinary handler of the application's own, not from the bundled app.
 * Runs unchanged on Node.js, Deno and Bun, for `bench-ab.ts` to load beside a
 * raw echo of `bench/raw-echo/` (an echo's replies are the request bytes, so
 * `--expect raw` checks both); `bench.ts --server handler|handler-json` and
 * the matrix start it themselves, on Node compiled against the built package
 * (`node dist/npm/bench/handler-echo.js`, see `node-build.ts`).
 *
 * - `--app echo`: `server.fallback((request) => request.reply(request.body))`.
 * - `--app json`: each body is a JSON object; the reply is the same object
 *   with `"ok": true` added, as a request/response service would answer.
 *   (Replies differ from the requests: load it with a generator that checks
 *   JSON, not with `--expect raw`.)
 * - `--borrow`: serve with `borrowBodies: true` (bodies lent to the handler
 *   until it returns), to measure what owned bodies cost
 *   (docs/performance.md#buffers-and-memory).
 *
 * ```sh
 * node --import tsx bench/handler-echo.ts --app echo --port 0
 * # listening on 127.0.0.1:PORT      (SIGTERM or SIGINT exits 0)
 * node --import tsx bench/bench-ab.ts --rounds 6 --size 64 \
 *   --server "raw=./node_modules/.bin/deno run -A bench/raw-echo/deno.ts --port 0" \
 *   --server "handler=./node_modules/.bin/deno run -A bench/handler-echo.ts --app echo --port 0"
 * ```
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { createLogger, type Handler, serve } from "../mod.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "10088" },
    app: { type: "string", default: "echo" },
    borrow: { type: "boolean", default: false },
  },
});
const port = Number(values.port);
if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
  console.error(`handler-echo: --port must be an integer from 0 to 65535, got "${values.port}"`);
  process.exit(2);
}

const encoder = new TextEncoder();
const APPS: Record<string, Handler> = {
  echo: (request) => {
    request.reply(request.body);
  },
  json: (request) => {
    const value = JSON.parse(request.text()) as Record<string, unknown>;
    request.reply(encoder.encode(JSON.stringify({ ...value, ok: true })));
  },
};
const handler = APPS[values.app];
if (handler === undefined) {
  console.error(`handler-echo: --app must be one of ${Object.keys(APPS).join(", ")}, got "${values.app}"`);
  process.exit(2);
}

const server = await serve({ host: values.host, port, logger: createLogger("error"), borrowBodies: values.borrow });
server.fallback(handler);
console.log(`listening on ${server.address.host}:${server.address.port}`);
const stop = (): void => {
  void server.close({ drainTimeout: 1000 }).then(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
