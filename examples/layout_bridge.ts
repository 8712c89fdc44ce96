/**
 * A bridge to a foreign frame layout. Old clients speak length-only frames
 * with 4-byte little-endian lengths (no message id):
 *
 * ```text
 *  0                               4
 *  +-------------------------------+---------------------+
 *  |  body length, u32 little end  |  body (length bytes) |
 *  +-------------------------------+---------------------+
 * ```
 *
 * The bridge listens in that layout (`idBytes: 0, lengthBytes: 4,
 * byteOrder: "little"`) and forwards each body, as a HELLO (id 1001), to an
 * upstream server that speaks tlvkit's default layout (2-byte id, 2-byte
 * big-endian length) — here the bundled `serve` application — then hands the
 * upstream's reply back to the old client in the old layout. One upstream
 * connection serves every bridged client: replies come back in request
 * order, so each `request()` gets its own answer.
 *
 * Run it with:
 *
 * ```sh
 * node --import tsx examples/layout_bridge.ts
 * deno run --allow-net examples/layout_bridge.ts
 * bun examples/layout_bridge.ts
 * ```
 *
 * @module
 */

import { connect, encodeFrame, FrameLayout, type FrameLayoutOptions, serve } from "../mod.ts";
import { createBundledApp, HELLO_ID } from "../cli.ts";

/** The foreign layout: length-only frames, 4-byte little-endian lengths. */
const LEGACY: FrameLayoutOptions = { idBytes: 0, lengthBytes: 4, byteOrder: "little", maxBody: 65535 };

const utf8 = new TextEncoder();
const text = new TextDecoder();
const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");

async function demo(): Promise<void> {
  // Upstream: the bundled application, default layout.
  const app = createBundledApp(new FrameLayout());
  const upstreamServer = await serve({ port: 0, router: app.router, onError: app.onError });

  // The bridge: legacy layout outside, one default-layout client inside.
  const upstream = await connect({ port: upstreamServer.address.port });
  const bridge = await serve({ port: 0, ...LEGACY });
  bridge.fallback(async (request) => {
    const reply = await upstream.request(HELLO_ID, request.body, { timeout: 5000 });
    request.reply(reply.body); // a length-only layout has no id to set
  });

  // An old client: the same library, told the legacy layout.
  const legacy = await connect({ port: bridge.address.port, ...LEGACY });
  const greeting = JSON.stringify({ id: 7, data: "hello from 1998" });
  console.log(`legacy frame on the wire: ${hex(encodeFrame(0, utf8.encode(greeting), LEGACY).subarray(0, 8))} ...`);
  const replies = await Promise.all([
    legacy.request(0, greeting),
    legacy.request(0, JSON.stringify({ id: 8, data: "second" })),
  ]);
  for (const reply of replies) console.log(`legacy client got: ${text.decode(reply.body)}`);

  await legacy.close();
  await bridge.close();
  await upstream.close();
  await upstreamServer.close();
}

await demo();
