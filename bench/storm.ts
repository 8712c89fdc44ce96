/**
 * Connection storms against `tlvkit serve`, one runtime after another: what a
 * hostile network costs the ordinary clients, and whether the server gets
 * over it. For each runtime (or a single binary) it starts the server, runs
 * ordinary clients (each connects, makes round trips, closes, again and
 * again) through a warm-up and a quiet phase, then storms and quiet phases
 * in turn, with
 * hostile peers in a process of their own (`tests/fixtures/hostile_peers.ts`,
 * on Node) during each storm; then it stops the server with SIGTERM.
 *
 * Reported per runtime: round trips per second in each phase and their ratio
 * to the first quiet phase, the hostile connections made, the server's CPU
 * use and RSS in each phase (from `/proc`, Linux), failed round trips, the server's
 * `stats` line, and SIGTERM's exit status and time.
 *
 * ```sh
 * node --import tsx bench/storm.ts [--runtimes node,deno,bun] [--binary FILE]
 *   [--pattern reset|close|half-close|stall-header] [--storms 2] [--seconds 4]
 *   [--workers 4] [--rounds 20] [--concurrency 8]
 * ```
 *
 * Exits 1 if any round trip failed or the server did not exit 0 on SIGTERM.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import process from "node:process";
import type { RuntimeName } from "../src/transport/types.ts";
import { HOSTILE_PATTERNS, type HostilePattern, type HostileReport } from "../tests/_hostile_peers.ts";
import { OrdinaryClients } from "../tests/_ordinary_clients.ts";
import { type Child, runtimeCommand, start, stopAll } from "../tests/_processes.ts";
import { scriptArgs } from "../scripts/_script_args.ts";

const USAGE = "Usage: storm.ts [--runtimes node,deno,bun] [--binary FILE] [--pattern reset|close|half-close|stall-header] " +
  "[--storms 2] [--seconds 4] [--workers 4] [--rounds 20] [--concurrency 8]";
const RUNTIMES: readonly RuntimeName[] = ["node", "deno", "bun"];

const values = scriptArgs("storm", USAGE, {
  runtimes: { type: "string", default: "node,deno,bun" },
  binary: { type: "string" },
  pattern: { type: "string", default: "reset" },
  storms: { type: "string", default: "2" },
  seconds: { type: "string", default: "4" },
  workers: { type: "string", default: "4" },
  rounds: { type: "string", default: "20" },
  concurrency: { type: "string", default: "8" },
}, (v) => {
  for (const name of v.runtimes.split(",")) {
    if (!RUNTIMES.includes(name as RuntimeName)) throw new Error(`--runtimes: unknown runtime "${name}" (use node, deno, bun)`);
  }
  if (!HOSTILE_PATTERNS.includes(v.pattern as HostilePattern)) throw new Error(`--pattern must be one of ${HOSTILE_PATTERNS.join(", ")}`);
  for (const name of ["storms", "seconds", "workers", "rounds", "concurrency"] as const) {
    if (!(Number(v[name]) >= 1)) throw new Error(`--${name} must be a number, 1 or more, got "${v[name]}"`);
  }
});

const pattern = values.pattern as HostilePattern;
const seconds = Number(values.seconds);
const storms = Number(values.storms);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The server's resident set size in MiB, from /proc (Linux), or NaN. */
function rssMiB(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
    return kb / 1024;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds the server has used so far (user + system), from /proc (Linux), or NaN. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

async function hostilePeers(port: number): Promise<HostileReport> {
  const child = start([...runtimeCommand("node", "tests/fixtures/hostile_peers.ts"), "--port", String(port), "--pattern", pattern,
    "--concurrency", values.concurrency, "--duration", String(seconds * 1000)]);
  const { code } = await child.exited;
  if (code !== 0) throw new Error(`hostile peers exited ${code}: ${child.stderr.trim()}`);
  return JSON.parse(child.stdout.trim().split("\n").at(-1)!) as HostileReport;
}

function serverCommand(label: string): Child {
  const args = ["serve", "--port", "0", "--stats-interval", "3600", "--frame-timeout", "1"];
  const command = values.binary !== undefined
    ? [values.binary, ...args]
    : [...runtimeCommand(label as RuntimeName, "src/cli.ts", ["--allow-net", "--allow-env", "--allow-read"]), ...args];
  return start(command);
}

async function run(label: string): Promise<boolean> {
  const server = serverCommand(label);
  const match = await server.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/m, 30_000);
  const port = Number(match[1]);
  const pid = server.process.pid;
  const ordinary = new OrdinaryClients({ port, workers: Number(values.workers), roundsPerConnection: Number(values.rounds), timeoutMs: 10_000 });
  const rss: string[] = [`start ${rssMiB(pid).toFixed(1)}`];
  /** Server CPU seconds used in each phase. */
  const cpu = new Map<string, number>();
  let cpuMark = cpuSeconds(pid);
  const endPhase = (phase: string): void => {
    const now = cpuSeconds(pid);
    cpu.set(phase, now - cpuMark);
    cpuMark = now;
  };
  const hostile: HostileReport[] = [];
  const phases = ["quiet"];
  // A warm-up, not reported: the first seconds run the clients' and the server's code cold.
  ordinary.start("warm-up");
  await sleep(seconds * 1000);
  rss.push(`warm ${rssMiB(pid).toFixed(1)}`);
  endPhase("warm-up");
  ordinary.mark("quiet");
  await sleep(seconds * 1000);
  rss.push(`quiet ${rssMiB(pid).toFixed(1)}`);
  endPhase("quiet");
  for (let i = 1; i <= storms; i++) {
    phases.push(`storm ${i}`, `after ${i}`);
    ordinary.mark(`storm ${i}`);
    hostile.push(await hostilePeers(port));
    rss.push(`storm ${i} ${rssMiB(pid).toFixed(1)}`);
    endPhase(`storm ${i}`);
    ordinary.mark(`after ${i}`);
    await sleep(seconds * 1000);
    rss.push(`after ${i} ${rssMiB(pid).toFixed(1)}`);
    endPhase(`after ${i}`);
  }
  const counts = await ordinary.stop();
  const stopAt = Date.now();
  server.kill("SIGTERM");
  const { code } = await server.exited;
  const stopMs = Date.now() - stopAt;
  const statsLine = /stats .*/.exec(server.stderr.split("\n").filter((line) => line.includes(" stats ")).at(-1) ?? "")?.[0] ?? "(none)";

  const quiet = counts.get("quiet")!;
  const quietRate = quiet.roundTrips / (quiet.ms / 1000);
  console.log(`\n${label}: ${pattern} storms, ${values.workers} ordinary clients (${values.rounds} round trips per connection), ` +
    `${values.concurrency} hostile peers at once`);
  for (const phase of phases) {
    const count = counts.get(phase)!;
    const rate = count.roundTrips / (count.ms / 1000);
    const storm = phase.startsWith("storm") ? hostile[Number(phase.split(" ")[1]) - 1] : undefined;
    console.log(`  ${phase.padEnd(8)} ${rate.toFixed(0).padStart(7)} round trips/s  ${(rate / quietRate).toFixed(2)} of quiet` +
      `  ${String(count.connects).padStart(5)} connects  server CPU ${(100 * cpu.get(phase)! / (count.ms / 1000)).toFixed(0).padStart(3)} %` +
      (storm ? `  hostile: ${storm.connections} connections (${(storm.connections / seconds).toFixed(0)}/s)` : ""));
  }
  console.log(`  server RSS MiB: ${rss.join(", ")}`);
  console.log(`  server ${statsLine}`);
  console.log(`  failures: ${ordinary.failures.length}${ordinary.failures.length > 0 ? ` (first: ${ordinary.failures[0]})` : ""}`);
  console.log(`  SIGTERM: exit ${code} after ${stopMs} ms`);
  return ordinary.failures.length === 0 && code === 0;
}

let ok = true;
try {
  const labels = values.binary !== undefined ? [values.binary] : values.runtimes.split(",");
  for (const label of labels) ok = (await run(label)) && ok;
} finally {
  await stopAll();
}
process.exit(ok ? 0 : 1);
