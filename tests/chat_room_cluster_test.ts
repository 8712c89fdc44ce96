import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { detectRuntime } from "../src/transport/detect.ts";
import { within } from "./_async.ts";
import { type Child, runtimeCommand, start, stopAll } from "./_processes.ts";
import { NO_REDIS, redis } from "./_redis_server.ts";

const RUNTIME = detectRuntime();
/** Node and Bun processes of their own: once per `npm test`, in the Node run. */
const SKIP = NO_REDIS || (RUNTIME === "node" ? false : "the chat room's two nodes run once per npm test, in the Node run");
if (SKIP) console.log(`chat room over Redis: skipped: ${SKIP}`);

after(() => stopAll());

/** The README's commands: a room node on `runtime`, and its port. */
async function roomNode(runtime: "node" | "bun", url: string, name: string): Promise<{ child: Child; port: number }> {
  const child = start([...runtimeCommand(runtime, "examples/chat_room.ts"), "--port", "0", "--cluster", url, "--node-id", name]);
  const match = await child.waitFor(new RegExp(`chat room on [\\d.]+:(\\d+) \\(node ${name}\\)`), 20_000);
  return { child, port: Number(match[1]) };
}

/** A member at its terminal (`--join`), typing into standard input. */
function member(runtime: "node" | "bun", port: number, name: string): Child {
  return start([...runtimeCommand(runtime, "examples/chat_room.ts"), "--join", String(port), "--name", name], { stdin: "pipe" });
}

function says(child: Child, line: string): Promise<RegExpMatchArray> {
  return child.waitFor(new RegExp(`^${line.replace(/[*]/g, "\\*")}$`, "m"), 10_000);
}

describe("the chat room as two nodes over Redis, from the README's commands", { skip: SKIP }, () => {
  it("carries joins, lines and leaves between a node on Node and a node on Bun", async () => {
    const r = await redis();
    const a = await roomNode("node", r.url, "a");
    const b = await roomNode("bun", r.url, "b");
    const alice = member("node", a.port, "alice");
    await alice.waitFor(/^welcome alice; here: nobody yet$/m, 20_000);
    const bob = member("bun", b.port, "bob");
    await bob.waitFor(/^welcome bob; here: nobody yet$/m, 20_000);
    await says(alice, "* bob joined");
    alice.process.stdin!.write("hi bob\n");
    await Promise.all([says(alice, "alice: hi bob"), says(bob, "alice: hi bob")]);
    bob.process.stdin!.write("hi alice, bye!\n");
    await Promise.all([says(alice, "bob: hi alice, bye!"), says(bob, "bob: hi alice, bye!")]);
    bob.process.stdin!.end();
    assert.equal((await within(bob.exited, 10_000, "bob to leave")).code, 0);
    await says(alice, "* bob left");
    alice.process.stdin!.end();
    assert.equal((await within(alice.exited, 10_000, "alice to leave")).code, 0);
    for (const node of [a, b]) {
      node.child.kill("SIGTERM");
      assert.equal((await within(node.child.exited, 10_000, "a room node to stop")).code, 0);
    }
  });
});
