import assert from "node:assert/strict";
import { after, afterEach, beforeEach, describe, it } from "node:test";
import { encodeFrame, serve, type Server } from "../mod.ts";
import { createPubSubApp } from "../cli.ts";
import { detectRuntime } from "../src/transport/detect.ts";
import { until } from "./_async.ts";
import { runToEnd, runtimeCommand, start, stopAll } from "./_processes.ts";
import {
  BROADCAST,
  ERROR,
  PUBLISH,
  PUSH,
  type PubSubPeer,
  pubsubPeer,
  SUBSCRIBE,
  UNSUBSCRIBE,
  WHOAMI,
} from "./_pubsub_peer.ts";

const RUNTIME = detectRuntime();
const CLI = runtimeCommand(RUNTIME, "src/cli.ts");
const text = new TextDecoder();

after(async () => {
  await stopAll();
});

describe(`serve --pubsub on ${RUNTIME}, one server`, () => {
  let server: Server;
  let peers: PubSubPeer[] = [];
  const peer = async (): Promise<PubSubPeer> => {
    const p = await pubsubPeer(server.address.port);
    peers.push(p);
    return p;
  };

  beforeEach(async () => {
    const app = createPubSubApp();
    server = await serve({ host: "127.0.0.1", port: 0, router: app.router, onError: app.onError, borrowBodies: true, logger: silent });
    app.attach(server);
  });
  afterEach(async () => {
    for (const p of peers) p.abort();
    peers = [];
    await server.close({ drainTimeout: 0 });
  });

  it("WHOAMI names the session and the node, with an empty body or {}", async () => {
    const a = await peer();
    const first = await a.call(WHOAMI, new Uint8Array(0));
    assert.equal(first.id, WHOAMI);
    assert.equal(first.json.node, server.cluster.node);
    assert.ok(Number.isSafeInteger(first.json.session));
    assert.deepEqual((await a.call(WHOAMI, {})).json, first.json);
    assert.deepEqual([...server.sessions.keys()].includes(first.json.session), true);
  });

  it("SUBSCRIBE, then PUBLISH reaches every subscriber but the publisher, text and base64", async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()];
    assert.deepEqual((await a.call(SUBSCRIBE, { topic: "news" })).json, { ok: true, topic: "news" });
    assert.deepEqual((await b.call(SUBSCRIBE, { topic: "news" })).json, { ok: true, topic: "news" });
    assert.deepEqual((await a.call(PUBLISH, { topic: "news", id: 7, data: "héllo" })).json, { ok: true });
    assert.deepEqual((await c.call(PUBLISH, { topic: "news", id: 8, base64: "AAEC/w==" })).json, { ok: true });
    await until(() => b.raw.frames().filter((f) => f.id === 8).length === 1, 5000, "the base64 publish");
    assert.deepEqual(b.received(7), ["héllo"]);
    assert.deepEqual([...b.raw.frames().find((f) => f.id === 8)!.body], [0, 1, 2, 255]);
    await until(() => a.received(8).length === 1, 5000, "the publish to a");
    assert.deepEqual(a.received(7), [], "not back to the publisher");
    assert.deepEqual(c.received(7), [], "not to a non-subscriber");
  });

  it("UNSUBSCRIBE says whether the session was subscribed, and stops deliveries", async () => {
    const [a, b] = [await peer(), await peer()];
    await a.call(SUBSCRIBE, { topic: "t" });
    assert.deepEqual((await a.call(UNSUBSCRIBE, { topic: "t" })).json, { ok: true, topic: "t", was: true });
    assert.deepEqual((await a.call(UNSUBSCRIBE, { topic: "t" })).json, { ok: true, topic: "t", was: false });
    await b.call(PUBLISH, { topic: "t", id: 7, data: "x" });
    await a.call(WHOAMI, {}); // a round trip after the publish
    assert.deepEqual(a.received(7), []);
  });

  it("BROADCAST reaches every session but the sender, once", async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()];
    assert.deepEqual((await a.call(BROADCAST, { id: 9, data: "all" })).json, { ok: true });
    await until(() => b.received(9).length === 1 && c.received(9).length === 1, 5000, "the broadcast");
    await b.call(WHOAMI, {});
    await a.call(WHOAMI, {});
    assert.deepEqual([a.received(9), b.received(9), c.received(9)], [[], ["all"], ["all"]]);
  });

  it("PUSH delivers to one session and says whether it did", async () => {
    const [a, b] = [await peer(), await peer()];
    const target = (await b.call(WHOAMI, {})).json.session;
    assert.deepEqual((await a.call(PUSH, { session: target, id: 5, data: "psst" })).json, { ok: true });
    await until(() => b.received(5).length === 1, 5000, "the push");
    assert.deepEqual(b.received(5), ["psst"]);
    assert.deepEqual((await a.call(PUSH, { session: target + 1000, id: 5, data: "x" })).json, { ok: false });
  });

  const bad: Array<[string, number, unknown, RegExp]> = [
    ["a body that is not JSON", SUBSCRIBE, new TextEncoder().encode("{"), /not valid JSON/],
    ["a body that is not UTF-8", SUBSCRIBE, new Uint8Array([0xff]), /not valid UTF-8/],
    ["a JSON array", PUBLISH, [1], /not a JSON object/],
    ["an empty SUBSCRIBE", SUBSCRIBE, new Uint8Array(0), /not valid JSON/],
    ["a missing topic", SUBSCRIBE, {}, /"topic" must be a non-empty string/],
    ["a topic that is a number", UNSUBSCRIBE, { topic: 5 }, /"topic" must be a non-empty string/],
    ["a topic over 256 bytes", SUBSCRIBE, { topic: "x".repeat(257) }, /topic/i],
    ["a missing id", PUBLISH, { topic: "t", data: "x" }, /"id" is missing/],
    ["an id out of range", BROADCAST, { id: 70000, data: "x" }, /"id" must be an integer from 0 to 65535/],
    ["a fractional id", BROADCAST, { id: 1.5, data: "x" }, /"id" must be an integer/],
    ["a reserved id", BROADCAST, { id: PUSH, data: "x" }, /"id" 65285 is reserved/],
    ["the ERROR id", PUBLISH, { topic: "t", id: ERROR, data: "x" }, /"id" 65535 is reserved/],
    ["neither data nor base64", BROADCAST, { id: 7 }, /exactly one of the fields "data" and "base64"/],
    ["both data and base64", BROADCAST, { id: 7, data: "", base64: "" }, /exactly one/],
    ["data that is not a string", BROADCAST, { id: 7, data: 5 }, /"data" must be a string/],
    ["bad base64", BROADCAST, { id: 7, base64: "!!" }, /"base64" must be a base64 string/],
    ["a bad session", PUSH, { session: -1, id: 7, data: "x" }, /"session" must be a non-negative integer/],
    ["a session that is text", PUSH, { session: "1", id: 7, data: "x" }, /"session" must be/],
    ["a WHOAMI that is not an object", WHOAMI, "me", /not a JSON object/],
  ];
  it("answers every bad request with an ERROR frame naming it, and keeps the session open", async () => {
    const a = await peer();
    for (const [what, id, body, pattern] of bad) {
      const answer = await a.call(id, body);
      assert.equal(answer.id, ERROR, `${what}: an ERROR frame`);
      assert.equal(answer.json.msgId, id, what);
      assert.match(answer.json.error, pattern, what);
    }
    assert.equal((await a.call(WHOAMI, {})).id, WHOAMI, "still open");
  });

  it("refuses more topics than a session may hold", async () => {
    const a = await peer();
    for (let i = 0; i < 64; i++) assert.equal((await a.call(SUBSCRIBE, { topic: `t${i}` })).id, SUBSCRIBE);
    const answer = await a.call(SUBSCRIBE, { topic: "one-too-many" });
    assert.equal(answer.id, ERROR);
    assert.match(answer.json.error, /64/);
  });

  it("still answers HELLO and echoes other ids", async () => {
    const a = await peer();
    a.raw.conn.write(encodeFrame(1001, new TextEncoder().encode('{"id":3,"data":"hi"}')));
    a.raw.conn.write(encodeFrame(42, new TextEncoder().encode("echo")));
    await until(() => a.raw.frames().length === 2, 5000, "HELLO and echo");
    assert.deepEqual(a.raw.frames().map((f) => [f.id, text.decode(f.body)]), [
      [3, '{"id":3,"data":"server has received msg, msg data is hi"}'],
      [42, "echo"],
    ]);
  });
});

describe(`serve --pubsub on the command line on ${RUNTIME}`, () => {
  it("without --pubsub echoes the reserved ids; with it, answers them", async () => {
    for (const pubsub of [false, true]) {
      const child = start([...CLI, "serve", "--port", "0", ...(pubsub ? ["--pubsub"] : [])]);
      let p: PubSubPeer | undefined;
      try {
        const match = await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 20_000);
        p = await pubsubPeer(Number(match[1]));
        const answer = await p.call(SUBSCRIBE, { topic: "news" });
        assert.equal(answer.id, SUBSCRIBE);
        assert.deepEqual(answer.json, pubsub ? { ok: true, topic: "news" } : { topic: "news" });
        const whoami = await p.call(WHOAMI, {});
        assert.equal(typeof whoami.json.session, pubsub ? "number" : "undefined");
      } finally {
        p?.abort();
        child.kill("SIGTERM");
        assert.equal((await child.exited).code, 0, child.stderr);
      }
    }
  });

  const bad: Array<[string[], RegExp]> = [
    [["--pubsub", "--id-bytes", "1"], /^tlvkit serve: --pubsub needs --id-bytes 2 or 4/],
    [["--node-id", "a"], /^tlvkit serve: --node-id names a node of a cluster: give --cluster too/],
    [["--cluster", "http://x"], /^tlvkit serve: --cluster must be a Redis URL/],
    [["--cluster", "redis://127.0.0.1:1", "--port", "0"], /^tlvkit serve: /],
    [["--cluster", "redis://127.0.0.1:1", "--node-id", "n1", "--port", "0", "--pubsub"], /^tlvkit serve: /],
  ];
  for (const [args, pattern] of bad) {
    it(`refuses \`serve ${args.join(" ")}\` in one line, exiting non-zero`, async () => {
      const result = await runToEnd([...CLI, "serve", ...args]);
      assert.notEqual(result.code, 0);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one line: ${result.stderr}`);
      assert.match(lines[0]!, pattern);
      assert.equal(result.stdout, "");
    });
  }
});

const silent = { error() {}, warn() {}, info() {}, debug() {} };
