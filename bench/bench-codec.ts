/**
 * Codec throughput on whichever runtime runs it: encode (into a coalescing
 * buffer, and one allocation per frame) and decode (the whole stream in one
 * chunk, and in 1,460-byte chunks like TCP segments), for bodies of 16 B,
 * 256 B, 4 KiB and 64 KiB. Prints MB/s of wire bytes and frames/s.
 *
 * ```sh
 * node --import tsx bench/bench-codec.ts [--seconds 0.5]
 * deno run --allow-read --allow-env bench/bench-codec.ts
 * bun bench/bench-codec.ts
 * ```
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { FrameDecoder, FrameEncoder } from "../mod.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { seconds: { type: "string", default: "0.5" } },
});
const SECONDS = Number(values.seconds);
if (!(SECONDS > 0)) {
  console.error(`bench-codec: --seconds must be a positive number, got "${values.seconds}"`);
  process.exit(2);
}

function runtimeName(): string {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (g.Deno) return `deno ${g.Deno.version.deno}`;
  if (g.Bun) return `bun ${g.Bun.version}`;
  return `node ${process.versions.node}`;
}

/** Run `work` (which handles `bytes` wire bytes and `frames` frames) repeatedly for SECONDS. */
function measure(bytes: number, frames: number, work: () => void): { mbps: number; fps: number } {
  for (let i = 0; i < 3; i++) work(); // warm up
  let rounds = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    work();
    rounds++;
    elapsed = performance.now() - start;
  } while (elapsed < SECONDS * 1000);
  const seconds = elapsed / 1000;
  return { mbps: (bytes * rounds) / seconds / 1e6, fps: (frames * rounds) / seconds };
}

const SIZES: Array<[string, number]> = [["16 B", 16], ["256 B", 256], ["4 KiB", 4096], ["64 KiB", 65535]];
/** Each round handles about this many wire bytes. */
const ROUND_BYTES = 4 * 1024 * 1024;
const CHUNK = 1460;

const encoder = new FrameEncoder();
let sink = 0;

console.log(`tlvkit codec benchmark on ${runtimeName()} (${SECONDS} s per case; MB = 10^6 wire bytes)`);
console.log(
  ["body", "encodeInto MB/s", "frames/s", "encode MB/s", "frames/s", "decode 1 chunk MB/s", "frames/s", "decode 1460 B MB/s", "frames/s"]
    .map((h, i) => (i === 0 ? h.padEnd(7) : h.padStart(i % 2 === 1 ? 20 : 12)))
    .join(""),
);

for (const [label, size] of SIZES) {
  const body = new Uint8Array(size).fill(0x61);
  const frameSize = encoder.frameSize(size);
  const count = Math.max(1, Math.floor(ROUND_BYTES / frameSize));
  const wire = new Uint8Array(count * frameSize);
  let offset = 0;
  for (let i = 0; i < count; i++) offset = encoder.encodeInto(wire, offset, i & 0xffff, body);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < wire.length; i += CHUNK) chunks.push(wire.subarray(i, i + CHUNK));

  const encodeInto = measure(wire.length, count, () => {
    let at = 0;
    for (let i = 0; i < count; i++) at = encoder.encodeInto(wire, at, i & 0xffff, body);
    sink += at;
  });
  const encode = measure(wire.length, count, () => {
    for (let i = 0; i < count; i++) sink += encoder.encode(i & 0xffff, body).length;
  });
  const onFrame = (id: number, b: Uint8Array): void => {
    sink += id + b.length;
  };
  const decodeWhole = measure(wire.length, count, () => {
    new FrameDecoder().decode(wire, onFrame);
  });
  const decodeChunked = measure(wire.length, count, () => {
    const decoder = new FrameDecoder();
    for (const chunk of chunks) decoder.decode(chunk, onFrame);
  });

  const cells = [encodeInto, encode, decodeWhole, decodeChunked].flatMap((r) => [
    r.mbps.toFixed(0).padStart(20),
    Math.round(r.fps).toLocaleString("en-US").padStart(12),
  ]);
  console.log(label.padEnd(7) + cells.join(""));
}
if (sink === -1) console.log("unreachable");
