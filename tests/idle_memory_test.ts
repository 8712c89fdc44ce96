/**
 * What an idle session costs in buffers, on whichever runtime runs this file:
 * connections that have sent nothing must not each hold read memory of
 * their own. Node asks for a read buffer when it makes a socket, so its
 * adapter lends every socket one shared buffer until its first read; Bun
 * hands each read over in memory of its own. Deno's reads are pulled into a
 * buffer given in advance, one per connection (512 bytes while idle): the check is skipped
 * there, and says so.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { describe, it } from "node:test";
import { connect, createLogger, echo, serve } from "../mod.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import { until, within } from "./_async.ts";
import { collectGarbage, noGcReason } from "./_gc.ts";

const RUNTIME = detectRuntime();
const IDLE = 500;
/** Buffer bytes an idle session may hold, on average. */
const LIMIT_PER_SESSION = 512;

/** A Node process that opens `count` connections, prints "open", and holds them until its input ends. */
const HOLDER = `
const net = require("node:net");
const [port, count] = process.argv.slice(1).map(Number);
let open = 0;
for (let i = 0; i < count; i++) {
  const socket = net.connect(port, "127.0.0.1", () => { if (++open === count) console.log("open"); });
  socket.on("error", () => {});
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

/** Bytes held in ArrayBuffers now. */
function buffers(): number {
  return process.memoryUsage().arrayBuffers;
}

describe(`idle sessions on ${RUNTIME}`, () => {
  const skip = RUNTIME === "deno"
    ? "Deno's reads are pulled into a buffer given in advance: one per connection (512 bytes while idle)"
    : noGcReason;
  if (skip !== undefined) console.log(`idle session buffers: skipped on ${RUNTIME}: ${skip}`);

  it(`hold no read buffer of their own (${IDLE} connections that send nothing)`, { skip }, async () => {
    const server = await serve({ port: 0, logger: createLogger("error", () => {}) });
    server.fallback(echo);
    const holder = spawn("node", ["-e", HOLDER, String(server.address.port), String(IDLE)], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      await collectGarbage();
      const before = buffers();
      await within(new Promise((resolve) => holder.stdout!.once("data", resolve)), 20_000, "the idle connections");
      await until(() => server.sessions.size === IDLE, 20_000, `${IDLE} sessions`);
      await collectGarbage();
      const perSession = (buffers() - before) / IDLE;
      console.log(`idle session buffers on ${RUNTIME}: ${perSession.toFixed(0)} bytes per session`);
      assert.ok(perSession < LIMIT_PER_SESSION, `${perSession.toFixed(0)} bytes of buffers per idle session, limit ${LIMIT_PER_SESSION}`);
      // The sessions still work: one of them echoes.
      const client = await connect({ port: server.address.port });
      assert.deepEqual([...(await client.request(9, "ok")).body], [...new TextEncoder().encode("ok")]);
      await client.close();
    } finally {
      holder.stdin!.end();
      await new Promise((resolve) => holder.once("close", resolve));
      await server.close({ drainTimeout: 100 });
    }
  });
});
