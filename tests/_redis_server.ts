/**
 * A `redis-server` of a test's own, on a free port of 127.0.0.1, for the
 * cluster tests; and whether one can be started here at all.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import process from "node:process";
import { within } from "./_async.ts";
import { type Child, start } from "./_processes.ts";

const HOST = "127.0.0.1";

function onPath(command: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => dir !== "" && existsSync(join(dir, command)));
}

/** Why tests that need Redis are skipped (`false`: they run). */
export const NO_REDIS: string | false = onPath("redis-server")
  ? false
  : "redis-server is not installed (apt-get install redis-server)";

/** A port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** A running `redis-server`. */
export interface Redis {
  child: Child;
  port: number;
  url: string;
}

/** Start a redis-server on `port` (a free one by default), stopped by `stopAll()` or {@link stopRedis}. */
export async function redis(options: { port?: number; password?: string } = {}): Promise<Redis> {
  const port = options.port ?? await freePort();
  const args = ["redis-server", "--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no"];
  if (options.password !== undefined) args.push("--requirepass", options.password);
  const child = start(args);
  await child.waitFor(/Ready to accept connections/, 10_000);
  return { child, port, url: `redis://${HOST}:${port}` };
}

/** Kill `server` (SIGKILL, as a crash) and wait for it to exit. */
export async function stopRedis(server: Redis): Promise<void> {
  server.child.kill("SIGKILL");
  await within(server.child.exited, 5000, "redis-server to exit");
}
