import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as net from "node:net";
import { describe, it } from "node:test";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { detectRuntime } from "../src/transport/detect.ts";
import type { DenoApi, DenoListener } from "../src/transport/_deno_types.ts";
import type { Connection, Listener } from "../src/transport/types.ts";
import { deferred, sleep, until, within } from "./_async.ts";
import { concat, pattern } from "./_bytes.ts";
import { assertHandlerErrorCloses, type CodedError, HOST, Recorder, TransportHarness } from "./_transport_harness.ts";

const ON_DENO = detectRuntime() === "deno";
/** Why the Deno-only cases are skipped elsewhere; `false` runs them. */
const DENO_ONLY: string | false = ON_DENO ? false : `the Deno adapter needs the Deno global; this is ${detectRuntime()}`;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ADAPTER_URL = new URL("../src/transport/deno.ts", import.meta.url).href;

/** Run a module given as text under Deno with only the given flags; resolve with its stdout. */
function runDeno(flags: string[], source: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["run", ...flags, "--ext=js", "-"], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Uint8Array) => (out += new TextDecoder().decode(chunk)));
    child.stderr.on("data", (chunk: Uint8Array) => (err += new TextDecoder().decode(chunk)));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`deno exited with ${code}: ${err}`));
    });
    child.stdin.end(source);
  });
}

describe("Deno transport adapter", () => {
  it("refuses to load where there is no Deno global", { skip: ON_DENO ? "the Deno global is present here" : false }, async () => {
    await assert.rejects(import("../src/transport/deno.ts"), (error: Error) => {
      assert.equal(
        error.message,
        "Using the Deno transport in an incompatible environment: the Deno global is missing",
      );
      return true;
    });
  });

  describe("on Deno", () => {
    const harness = TransportHarness.forSuite(
      ON_DENO ? async () => (await import("../src/transport/deno.ts")).denoTransport : undefined,
    );

    it("returns false from a small write, then fires onDrain once the backlog is written", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      assert.equal(client.write(new Uint8Array(0)), true, "an empty write leaves no backlog");
      assert.equal(client.write(new TextEncoder().encode("hello")), false);
      assert.equal(client.backlog, 5);
      await within(clientRec.drained.promise, 5000, "drain");
      assert.equal(client.backlog, 0);
      assert.equal(clientRec.drains, 1);
      await until(() => serverRec.bytes === 5, 5000, "the bytes");
      client.abort();
      server.abort();
    });

    it("sends writes of mixed sizes in order, merged or not", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      const parts: Uint8Array[] = [];
      const sizes = [100, 20 * 1024, ...Array<number>(40).fill(1024), 1024 * 1024, 3, 16 * 1024 - 1, 16 * 1024, 7, 70 * 1024];
      sizes.forEach((size, i) => parts.push(pattern(size, i + 1)));
      for (const part of parts) client.write(part);
      const expected = concat(parts);
      assert.equal(client.backlog, expected.length, "the backlog counts every byte not yet written");
      await until(() => serverRec.bytes === expected.length, 20000, "everything");
      assert.deepEqual(serverRec.joined(), expected);
      await within(clientRec.drained.promise, 5000, "drain");
      assert.equal(client.backlog, 0);
      client.abort();
      server.abort();
    });

    it("sends thousands of queued writes in order, through a backlog that empties and fills again", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      // Large and tiny writes in turn: none merged, so the queue holds thousands of entries.
      const burst = (seed: number): Uint8Array[] =>
        Array.from({ length: 3000 }, (_, i) => pattern(i % 2 === 0 ? 16 * 1024 : 1 + (i % 7), seed + i));
      const first = burst(1);
      for (const part of first) client.write(part);
      await within(clientRec.drained.promise, 20000, "the first backlog written");
      const second = burst(5000);
      for (const part of second) client.write(part);
      const expected = concat([...first, ...second]);
      await until(() => serverRec.bytes === expected.length, 30000, "everything");
      assert.deepEqual(serverRec.joined(), expected);
      await until(() => client.backlog === 0, 5000, "the backlog empty");
      assert.equal(clientRec.drains, 2, "one drain per backlog");
      client.abort();
      server.abort();
    });

    it("keeps every chunk intact while connections share read slabs", { skip: DENO_ONLY }, async () => {
      const pairs = [await harness.pair(), await harness.pair(), await harness.pair()];
      const data = pairs.map((_, i) => pattern(512 * 1024, 100 + i));
      // Interleaved small writes make the reads of the three connections alternate.
      for (let offset = 0; offset < 512 * 1024; offset += 3000) {
        pairs.forEach(({ client }, i) => client.write(data[i]!.slice(offset, offset + 3000)));
        if (offset % 30000 === 0) await sleep(1);
      }
      for (const [i, { serverRec }] of pairs.entries()) {
        await until(() => serverRec.bytes === data[i]!.length, 20000, `connection ${i}`);
      }
      for (const [i, { serverRec }] of pairs.entries()) assert.deepEqual(serverRec.joined(), data[i]);
      for (const { client, server } of pairs) {
        client.abort();
        server.abort();
      }
    });

    it("holds data and FIN read while paused until resume, in order", { skip: DENO_ONLY }, async () => {
      const { client, server, serverRec } = await harness.pair();
      server.pause();
      client.write(new TextEncoder().encode("abc"));
      client.end();
      await sleep(50);
      assert.deepEqual(serverRec.events, [], "nothing delivered while paused");
      server.resume();
      await within(serverRec.gotEnd.promise, 5000, "end");
      assert.deepEqual(serverRec.events, ["data", "end"]);
      assert.equal(new TextDecoder().decode(serverRec.joined()), "abc");
      server.end();
      await within(serverRec.closed.promise, 5000, "close");
      assert.equal(serverRec.closeError, undefined);
    });

    it("ends only after a large backlog has been written", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server, serverRec } = await harness.pair();
      const data = pattern(4 * 1024 * 1024, 9);
      client.write(data);
      client.end();
      assert.equal(client.write(new Uint8Array(1)), false, "writing after end is a no-op");
      await within(serverRec.gotEnd.promise, 20000, "end");
      assert.deepEqual(serverRec.joined(), data);
      assert.equal(clientRec.drains, 0, "no drain after end(), as on Node");
      server.end();
      await within(clientRec.closed.promise, 5000, "client close");
      await within(serverRec.closed.promise, 5000, "server close");
      assert.equal(clientRec.closeError, undefined);
    });

    // An accepted connection sends what onData writes from its read loop, before reading on.
    it("sends what an accepted connection writes in onData in order, with a write from outside, a drain after, and end after them", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server } = await harness.unstartedPair();
      const encoder = new TextEncoder();
      const events: string[] = [];
      server.start({
        onData: (chunk) => {
          const text = new TextDecoder().decode(chunk);
          events.push(`data ${text}`);
          if (text.startsWith("solo")) {
            server.write(encoder.encode(`[${text}]`)); // one write: sent by the read loop alone
          } else {
            server.write(encoder.encode(`<${text}`));
            server.write(pattern(64 * 1024, text.length)); // more than one write's worth, and merged with neither
            server.write(encoder.encode(`${text}>`));
          }
          if (text.endsWith("end")) server.end();
          return true;
        },
        onEnd: () => events.push("end"),
        onDrain: () => events.push("drain"),
        onClose: () => events.push("close"),
      });
      const reply = (text: string): Uint8Array => text.startsWith("solo")
        ? encoder.encode(`[${text}]`)
        : concat([encoder.encode(`<${text}`), pattern(64 * 1024, text.length), encoder.encode(`${text}>`)]);
      const expected: Uint8Array[] = [];
      const drainCount = (): number => events.filter((event) => event === "drain").length;
      const exchange = async (text: string): Promise<void> => {
        const drains = drainCount();
        expected.push(reply(text));
        client.write(encoder.encode(text));
        const total = concat(expected).length;
        await until(() => clientRec.bytes === total, 5000, `the reply to ${text}`);
        await until(() => drainCount() === drains + 1, 5000, `one drain after the reply to ${text}`);
      };
      await exchange("solo");
      await exchange("one");
      // From outside onData, while the read loop waits for the peer: written at once, in order.
      const drains = drainCount();
      server.write(encoder.encode("|"));
      expected.push(encoder.encode("|"));
      await until(() => drainCount() === drains + 1, 5000, "the drain after a write from outside");
      await exchange("twotwo");
      await exchange("solo2");
      client.write(encoder.encode("soloend"));
      expected.push(reply("soloend"));
      await within(clientRec.gotEnd.promise, 5000, "end after the last reply");
      assert.deepEqual(clientRec.joined(), concat(expected));
      assert.deepEqual(events.filter((event) => event !== "drain"), ["data solo", "data one", "data twotwo", "data solo2", "data soloend"]);
      assert.equal(events.at(-1), "data soloend", "no drain after end(), as on Node");
      client.end();
      await until(() => events.includes("close"), 5000, "the server side to close");
    });

    it("reports one close and no drain when an accepted connection writes in onData and aborts there", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server } = await harness.unstartedPair();
      const events: string[] = [];
      server.start({
        onData: () => {
          events.push("data");
          assert.equal(server.write(new Uint8Array(100)), false);
          server.abort();
          return true;
        },
        onEnd: () => events.push("end"),
        onDrain: () => events.push("drain"),
        onClose: (error) => events.push(`close ${error?.message ?? ""}`),
      });
      client.write(new Uint8Array(10));
      await within(clientRec.gotEnd.promise, 5000, "the client to see the abort");
      await sleep(20);
      // The write may or may not have left (abort discards the backlog): no drain, one close either way.
      assert.deepEqual(events, ["data", "close "]);
      client.abort();
    });

    it("closes a reader with ECONNRESET when the peer resets", { skip: DENO_ONLY }, async () => {
      // A Deno peer cannot send a bare reset (closing sends FIN first), so node:net's resetAndDestroy does.
      const resetter = net.createServer((socket) => {
        socket.on("data", () => socket.resetAndDestroy());
      });
      await new Promise<void>((resolve) => resetter.listen(0, HOST, resolve));
      try {
        const port = (resetter.address() as net.AddressInfo).port;
        const { client, clientRec } = await harness.connect(port);
        client.write(new TextEncoder().encode("reset me"));
        await within(clientRec.closed.promise, 5000, "client close");
        assert.equal(clientRec.closeError?.code, "ECONNRESET");
        assert.equal(
          clientRec.closeError.message,
          `Cannot read from 127.0.0.1:${port}: connection reset by peer (ECONNRESET)`,
        );
        assert.deepEqual(clientRec.events, ["close"]);
      } finally {
        await new Promise<void>((resolve) => resetter.close(() => resolve()));
      }
    });

    it("closes a writer whose peer is gone with EPIPE or ECONNRESET, once", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server } = await harness.pair();
      server.pause();
      client.write(pattern(256 * 1024, 5));
      await within(clientRec.drained.promise, 5000, "the client's backlog to leave");
      await sleep(20);
      server.abort();
      // Deno closes with FIN, then the kernel resets for the unread bytes: the client sees end first.
      await within(clientRec.gotEnd.promise, 5000, "client to see end");
      for (let i = 0; i < 100 && clientRec.closes === 0; i++) {
        client.write(pattern(16 * 1024, i));
        await sleep(5);
      }
      await within(clientRec.closed.promise, 5000, "client close");
      const code = clientRec.closeError?.code;
      assert.ok(code === "EPIPE" || code === "ECONNRESET", `code ${code}`);
      assert.match(clientRec.closeError!.message, /^Cannot write to 127\.0\.0\.1:\d+: (broken pipe \(EPIPE\)|connection reset by peer \(ECONNRESET\))$/);
      assert.equal(clientRec.closes, 1);
      assert.equal(clientRec.eventsAfterClose, 0);
    });

    it("closes the connection with the error a handler throws", { skip: DENO_ONLY }, async () => {
      await assertHandlerErrorCloses(harness);
    });

    it("delivers an abort made before start as a close without error", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server } = await harness.unstartedPair();
      server.abort();
      const rec = new Recorder();
      server.start(rec);
      assert.deepEqual(rec.events, ["close"]);
      assert.equal(rec.closeError, undefined);
      assert.equal(server.backlog, 0);
      await within(clientRec.gotEnd.promise, 5000, "client to see end");
      client.abort();
    });

    it("delivers a drain from before start at start, and reports the error of a handler that throws there with the close", { skip: DENO_ONLY }, async () => {
      const { client, clientRec, server } = await harness.unstartedPair();
      assert.equal(server.write(new TextEncoder().encode("before start")), false);
      await until(() => server.backlog === 0, 5000, "the write before start");
      const rec = new Recorder();
      server.start(rec);
      assert.equal(rec.drains, 1, "delivered at start");
      await until(() => clientRec.bytes === 12, 5000, "the bytes");

      const other = await harness.unstartedPair();
      other.server.write(new TextEncoder().encode("before start"));
      await until(() => other.server.backlog === 0, 5000, "the write before start");
      other.server.abort();
      const events: string[] = [];
      const oops = new Error("handler failed");
      other.server.start({
        onData: () => {},
        onEnd: () => events.push("end"),
        onDrain: () => {
          events.push("drain");
          throw oops;
        },
        onClose: (error) => events.push(`close ${error?.message}`),
      });
      assert.deepEqual(events, ["drain", "close handler failed"]);
      client.abort();
      server.abort();
      other.client.abort();
    });

    it("closes a listener twice, resolving both times, and refuses connections after", { skip: DENO_ONLY }, async () => {
      const extra = await harness.transport.listen({ host: HOST, port: 0 }, (connection) => connection.abort());
      const { port } = extra.address;
      await Promise.all([extra.close(), extra.close()]);
      await assert.rejects(harness.transport.connect({ host: HOST, port }), { code: "ECONNREFUSED" });
    });

    it("reports an accept failure to onAcceptError and keeps accepting after a pause", { skip: DENO_ONLY }, async () => {
      // Stand in for an accept() that fails once with EMFILE, the way Deno reports it.
      const denoGlobal = (globalThis as unknown as { Deno: DenoApi }).Deno;
      const realListen = denoGlobal.listen;
      denoGlobal.listen = (options) => {
        const real = realListen.call(denoGlobal, options);
        let failures = 1;
        return {
          get addr() {
            return real.addr;
          },
          accept() {
            if (failures-- > 0) {
              return Promise.reject(Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" }));
            }
            return real.accept();
          },
          close: () => real.close(),
        } satisfies DenoListener;
      };
      const errors: CodedError[] = [];
      const accepted = deferred<Connection>();
      let flaky: Listener;
      try {
        flaky = await harness.transport.listen({ host: HOST, port: 0, onAcceptError: (error) => errors.push(error) }, (connection) => {
          harness.track(connection);
          accepted.resolve(connection);
        });
      } finally {
        denoGlobal.listen = realListen;
      }
      try {
        const { port } = flaky.address;
        await until(() => errors.length === 1, 5000, "the accept error");
        assert.equal(errors[0]!.code, "EMFILE");
        assert.equal(errors[0]!.message, `Cannot accept on 127.0.0.1:${port}: too many open files (EMFILE)`);
        const client = harness.track(await harness.transport.connect({ host: HOST, port }));
        const server = await within(accepted.promise, 5000, "accept after the failure");
        assert.equal(server.remote.port, client.local.port);
        assert.equal(errors.length, 1);
        client.abort();
        server.abort();
      } finally {
        await flaky.close();
      }
    });

    it("reports a missing net permission as EPERM instead of prompting", { skip: DENO_ONLY }, async () => {
      const source = `
        const { denoTransport } = await import(${JSON.stringify(ADAPTER_URL)});
        const report = async (what, attempt) => {
          try {
            await attempt();
            console.log(JSON.stringify({ what, ok: true }));
          } catch (error) {
            console.log(JSON.stringify({ what, code: error.code, message: error.message }));
          }
        };
        await report("listen", () => denoTransport.listen({ host: "127.0.0.1", port: 10086 }, () => {}));
        await report("connect", () => denoTransport.connect({ host: "127.0.0.1", port: 10086 }));
      `;
      // "prompt" (which would ask on a terminal) and "denied". Not "--no-prompt" alone: spawned by a
      // Deno run with -A, a child Deno inherits all permissions.
      for (const flags of [["--allow-net=127.0.0.2"], ["--deny-net"]]) {
        const lines = (await within(runDeno(flags, source), 30000, "deno run")).trim().split("\n");
        assert.deepEqual(lines.map((line) => JSON.parse(line)), [
          {
            what: "listen",
            code: "EPERM",
            message: "Cannot listen on 127.0.0.1:10086: Deno lacks the net permission; run with --allow-net",
          },
          {
            what: "connect",
            code: "EPERM",
            message: "Cannot connect to 127.0.0.1:10086: Deno lacks the net permission; run with --allow-net",
          },
        ], `with ${flags.join(" ")}`);
      }
    });
  });
});
