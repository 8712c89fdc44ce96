/**
 * `npm start` / `bun run start`: run `tlvkit serve` on the runtime whose
 * package manager started the script. `npm start` runs it on Node (in this
 * process); `bun run start` runs it on Bun, which `bun run` would otherwise not
 * do, since package scripts call `node`. (`deno task start` needs no launcher:
 * deno.json runs Deno directly.) Extra arguments go to `serve`:
 * `npm start -- --port 0`.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const agent = process.env["npm_config_user_agent"] ?? "";
const execPath = process.env["npm_execpath"] ?? "";
// bun sets both; when started through npx, npm's user agent may be inherited.
const startedByBun = agent.startsWith("bun/") || /[\\/]bun(\.exe)?$/.test(execPath);

if (startedByBun) {
  const local = join(ROOT, "node_modules", ".bin", "bun");
  const bun = existsSync(local) ? local : "bun";
  const child = spawn(bun, [join(ROOT, "src", "cli.ts"), "serve", ...process.argv.slice(2)], { stdio: "inherit" });
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => process.exit(code ?? (signal === "SIGINT" ? 130 : 143)));
} else {
  // `serve --workers N` on Node starts its workers with this same script
  // (node:cluster runs the entry again) and "serve" already in front.
  if (process.argv[2] !== "serve") process.argv.splice(2, 0, "serve");
  await import("../src/cli.ts");
}
