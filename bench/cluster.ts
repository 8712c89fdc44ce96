/**
 * What a hop through the cluster bus costs: `tlvkit serve --pubsub` on two
 * nodes joined over a `redis-server` this script starts, a publisher client
 * on node a keeping `--window` PUBLISH requests in flight, and
 * `--subscribers` clients subscribed to the topic, on node a ("local": no
 * bus) or on node b ("remote": through Redis). Reported per case: publishes
 * answered per second, frames delivered per second (all subscribers), and
 * the delay from a publish being sent to its delivery (p50, p99), measured in
 * this process, which is also the load generator (its own CPU can set the
 * pace: the figures are a floor on what the nodes sustain).
 *
 * ```sh
 * node --import tsx bench/cluster.ts --runtime node --subscribers 8 --duration 5
 * ```
 *
 * Options: `--runtime node|deno|bun` (the nodes'), `--subscribers 8`,
 * `--window 16`, `--size 64` (bytes of data per publish), `--duration 5` and
 * `--warmup 1` (seconds). Needs `redis-server` on the PATH.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { type Client, connect } from "../mod.ts";
import type { RuntimeName } from "../src/transport/types.ts";
import { runtimeCommand, start, stopAll } from "../tests/_processes.ts";
import { NO_REDIS, redis } from "../tests/_redis_server.ts";

const PUBLISH = 0xff03;
const SUBSCRIBE = 0xff01;
const DELIVERED = 7;
const utf8 = new TextEncoder();
const text = new TextDecoder();

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    runtime: { type: "string", default: "node" },
    subscribers: { type: "string", default: "8" },
    window: { type: "string", default: "16" },
    size: { type: "string", default: "64" },
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
  },
});

function positive(name: string, value: string): number {
  const number = Number(value);
  if (!(number > 0 && Number.isFinite(number))) {
    console.error(`cluster bench: --${name} must be a positive number, got "${value}"`);
    process.exit(2);
  }
  return number;
}

const runtime = values.runtime as RuntimeName;
if (!["node", "deno", "bun"].includes(runtime)) {
  console.error(`cluster bench: --runtime must be node, deno or bun, got "${values.runtime}"`);
  process.exit(2);
}
const subscribers = Math.floor(positive("subscribers", values.subscribers));
const window = Math.floor(positive("window", values.window));
const size = Math.floor(positive("size", values.size));
const duration = positive("duration", values.duration) * 1000;
const warmup = positive("warmup", values.warmup) * 1000;
if (NO_REDIS) {
  console.error(`cluster bench: ${NO_REDIS}`);
  process.exit(1);
}

/** A `serve --pubsub` node of the cluster, and its port. */
async function node(url: string, name: string): Promise<number> {
  const child = start([...runtimeCommand(runtime, "src/cli.ts", ["--allow-net"]), "serve", "--port", "0", "--pubsub", "--cluster", url, "--node-id", name, "--log-level", "error"]);
  return Number((await child.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 30_000))[1]);
}

interface Result {
  published: number;
  delivered: number;
  delays: number[];
}

async function run(publishPort: number, subscribePort: number): Promise<Result> {
  const result: Result = { published: 0, delivered: 0, delays: [] };
  let measuring = false;
  const members: Client[] = [];
  for (let i = 0; i < subscribers; i++) {
    const member = await connect({
      port: subscribePort,
      onFrame: (frame) => {
        if (frame.id !== DELIVERED || !measuring) return;
        result.delivered++;
        const sentAt = Number(text.decode(frame.body.subarray(0, frame.body.indexOf(0x7c))));
        result.delays.push(performance.now() - sentAt);
      },
    });
    await member.request(SUBSCRIBE, JSON.stringify({ topic: "bench" }));
    members.push(member);
  }
  // Subscriptions reach Redis asynchronously: give them a moment.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const publisher = await connect({ port: publishPort });
  const pad = "x".repeat(Math.max(0, size - 20));
  let stop = false;
  const loop = async (): Promise<void> => {
    while (!stop) {
      const data = `${performance.now()}|${pad}`;
      await publisher.request(PUBLISH, utf8.encode(JSON.stringify({ topic: "bench", id: DELIVERED, data })));
      if (measuring) result.published++;
    }
  };
  const loops = Array.from({ length: window }, () => loop());
  await new Promise((resolve) => setTimeout(resolve, warmup));
  measuring = true;
  await new Promise((resolve) => setTimeout(resolve, duration));
  measuring = false;
  stop = true;
  await Promise.all(loops);
  for (const client of [publisher, ...members]) client.abort();
  return result;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

try {
  const server = await redis();
  const a = await node(server.url, "a");
  const b = await node(server.url, "b");
  console.log(`nodes on ${runtime}, ${subscribers} subscribers, window ${window}, ${size} B of data, ${duration / 1000} s measured`);
  for (const [label, subscribePort] of [["local (a → a)", a], ["remote (a → Redis → b)", b]] as const) {
    const r = await run(a, subscribePort);
    const delays = r.delays.sort((x, y) => x - y);
    const seconds = duration / 1000;
    console.log(
      `${label.padEnd(24)} ${Math.round(r.published / seconds).toLocaleString("en-US").padStart(8)} publishes/s ` +
        `${Math.round(r.delivered / seconds).toLocaleString("en-US").padStart(9)} deliveries/s ` +
        `delay p50 ${percentile(delays, 0.5).toFixed(2)} ms, p99 ${percentile(delays, 0.99).toFixed(2)} ms`,
    );
  }
} finally {
  await stopAll();
}
