/**
 * What any cluster bus must do with a slow reader on another node: a
 * delivery obeys that session's water marks, up to `slow-consumer`, and
 * holds up nobody else. Shared by the in-process and the Redis cluster tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { CloseReason, Server } from "../mod.ts";
import type { Connection } from "../src/transport/types.ts";
import { sleep, until } from "./_async.ts";
import { rawPeer } from "./_raw_peer.ts";

/** Server options that make node `b` of {@link slowReaderOnAnotherNode} close a slow reader soon. */
export const SLOW_READER_LIMITS = { highWaterMark: 64 * 1024, hardLimit: 512 * 1024 };

/**
 * On `b` (started with {@link SLOW_READER_LIMITS} and an `onSessionClose` that
 * records into `closes`), a peer that stops reading and a member that reads
 * (`reader`: its frames as `id:text`); `a` broadcasts until `b` closes the
 * stalled peer as a slow consumer, then once more: the reader still gets it.
 *
 * @param raws Where the stalled peer's connection is kept, for the caller to abort.
 */
export async function slowReaderOnAnotherNode(
  a: Server,
  b: Server,
  reader: { inbox: string[] },
  closes: CloseReason[],
  raws: Connection[],
): Promise<void> {
  const before = b.sessions.size;
  const stalled = await rawPeer(b.address.port);
  raws.push(stalled.conn);
  stalled.conn.pause();
  await until(() => b.sessions.size === before + 1, 5000, "the stalled peer's session on b");
  // Enough to fill the socket buffers and pass the hard limit (at most 32 MB),
  // at a pace the reader, in this same process, keeps up with.
  const body = "x".repeat(16 * 1024);
  for (let i = 0; i < 2000 && !closes.includes("slow-consumer"); i++) {
    a.broadcast(4, body);
    await sleep(1);
  }
  await until(() => closes.includes("slow-consumer"), 10_000, "the slow consumer closed");
  assert.equal(closes.filter((reason) => reason === "slow-consumer").length, 1, "only the stalled peer closed");
  assert.ok(reader.inbox.length > 0, "the reader got the broadcasts meanwhile");
  // A bus may have dropped some of the flood (Redis cuts a subscriber whose
  // output buffer overflows; delivery is at most once): ask again until the
  // reader sees a later broadcast, bounded.
  const deadline = Date.now() + 20_000;
  while (!reader.inbox.includes("4:after") && Date.now() < deadline) {
    a.broadcast(4, "after");
    await sleep(200);
  }
  assert.ok(reader.inbox.includes("4:after"), `the reader still served (closes ${closes.join(",")}, ${reader.inbox.length} frames, b has ${b.sessions.size} sessions, a's bus ${JSON.stringify(a.stats().bus)}, b's ${JSON.stringify(b.stats().bus)}, nodes ${a.cluster.nodes().length})`);
}
