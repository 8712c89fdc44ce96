/**
 * Accept failures: how they are classified (the same table for every
 * adapter), and what the server does with each kind: a peer gone before its
 * accept is counted and logged at debug, anything else is counted, logged as
 * an error and passed to `onError`. The server is driven through a transport
 * whose listener reports failures on demand.
 *
 * @module
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, serve } from "../mod.ts";
import { acceptFailureKind, peerGoneError } from "../src/transport/_accept_failure.ts";
import { errorCode, socketError } from "../src/transport/_socket_error.ts";
import type { Listener, ListenOptions, Transport } from "../src/transport/types.ts";

/** A transport that accepts nothing and lets the test report accept failures. */
function failingTransport(): { transport: Transport; fail: (error: Error) => void } {
  let options: ListenOptions | undefined;
  const transport: Transport = {
    runtime: "node",
    listen(given): Promise<Listener> {
      options = given;
      return Promise.resolve({ address: { host: given.host, port: 4242 }, close: () => Promise.resolve() });
    },
    connect(): Promise<never> {
      return Promise.reject(new Error("not used"));
    },
  };
  return { transport, fail: (error) => options!.onAcceptError!(error) };
}

function denoError(name: string): Error {
  const error = new Error(`${name} (os error)`);
  error.name = name;
  return error;
}

describe("acceptFailureKind", () => {
  it("calls a peer that left before its accept peer-gone, on every runtime's spelling", () => {
    for (const code of ["ECONNABORTED", "ECONNRESET", "ENOTCONN", "EPROTO", "EHOSTUNREACH", "ENETUNREACH"]) {
      assert.equal(acceptFailureKind(code), "peer-gone", code);
    }
    // Deno throws classes named after the condition, without a code on older releases.
    for (const name of ["NotConnected", "ConnectionAborted", "ConnectionReset"]) {
      assert.equal(acceptFailureKind(errorCode(denoError(name))), "peer-gone", name);
    }
    assert.equal(peerGoneError("127.0.0.1", 1).code, "ENOTCONN");
  });

  it("calls running out of descriptors, buffers or memory exhausted, and anything else unexpected", () => {
    for (const code of ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]) assert.equal(acceptFailureKind(code), "exhausted", code);
    for (const code of [undefined, "EINVAL", "EBADF", "EPERM_BUT_NOT"]) assert.equal(acceptFailureKind(code), "unexpected", String(code));
  });
});

/** A server on {@link failingTransport} that keeps its log lines (debug up) and the errors given to onError. */
async function failingServer() {
  const { transport, fail } = failingTransport();
  const lines: string[] = [];
  const errors: Error[] = [];
  const server = await serve({ port: 0, transport, logger: createLogger("debug", (line) => lines.push(line)), onError: (error) => errors.push(error) });
  return { server, fail, lines, errors };
}

describe("Server on accept failures", () => {
  it("counts a peer gone before its accept, logs it at debug only and does not call onError", async () => {
    const { server, fail, lines, errors } = await failingServer();
    try {
      for (let i = 0; i < 5; i++) fail(peerGoneError("127.0.0.1", 4242));
      fail(socketError("accept on", "127.0.0.1", 4242, "ECONNABORTED", new Error("aborted")));
      const stats = server.stats();
      assert.equal(stats.connectionsAborted, 6);
      assert.equal(stats.acceptErrors, 0);
      assert.equal(stats.sessionsOpened, 0);
      assert.deepEqual(errors, []);
      assert.equal(lines.filter((line) => / (ERROR|WARN|INFO) /.test(line)).length, 0, lines.join("\n"));
      assert.equal(lines.filter((line) => / DEBUG +Cannot accept on 127\.0\.0\.1:4242: the peer is no longer connected \(ENOTCONN\); accepting on/.test(line)).length, 1, "one debug line a second, not one per peer");
    } finally {
      await server.close();
    }
  });

  it("counts other failures, logs them as errors at a bounded rate and passes each to onError", async () => {
    const { server, fail, lines, errors } = await failingServer();
    try {
      for (let i = 0; i < 3; i++) fail(socketError("accept on", "127.0.0.1", 4242, "EMFILE", new Error("EMFILE")));
      fail(new Error("something else"));
      const stats = server.stats();
      assert.equal(stats.acceptErrors, 4);
      assert.equal(stats.connectionsAborted, 0);
      assert.equal(errors.length, 4);
      const errorLines = lines.filter((line) => / ERROR /.test(line));
      assert.equal(errorLines.length, 1, `throttled to one line a second: ${errorLines.join("\n")}`);
      assert.match(errorLines[0]!, /too many open files \(EMFILE\); still accepting/);
    } finally {
      await server.close();
    }
  });
});
