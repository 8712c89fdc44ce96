/**
 * The `tlvkit` command line (docs/protocol.md#command-line). Runs unchanged as
 *
 * ```sh
 * node --import tsx src/cli.ts <command> [options]
 * deno run --allow-net src/cli.ts <command> [options]
 * bun src/cli.ts <command> [options]
 * ```
 *
 * @module
 */

import process from "node:process";
import { setTimeout } from "node:timers";
import { runSend } from "./cli/send.ts";
import { runServe } from "./cli/serve.ts";
import { UsageError } from "./cli/options.ts";
import { VERSION } from "./version.ts";

const HELP = `Usage: tlvkit <command> [options]

Commands:
  serve      run the message server (tlvkit serve --help)
  send       send frames to a server and print the replies (tlvkit send --help)

Options:
  --help     show this help
  --version  show the version
`;

function fail(prefix: string, error: unknown): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${prefix}: ${message.split("\n")[0]}\n`);
  return error instanceof UsageError ? 2 : 1;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "serve":
        return await runServe(rest);
      case "send":
        return await runSend(rest);
      case "--help":
      case "-h":
      case "help":
        process.stdout.write(HELP);
        return 0;
      case "--version":
      case "-v":
        process.stdout.write(`tlvkit ${VERSION}\n`);
        return 0;
      case undefined:
        throw new UsageError("missing command: use serve or send (see tlvkit --help)");
      default:
        throw new UsageError(`unknown command "${command}": use serve or send (see tlvkit --help)`);
    }
  } catch (error) {
    const prefix = command === "serve" || command === "send" ? `tlvkit ${command}` : "tlvkit";
    return fail(prefix, error);
  }
}

// A reader that goes away (`tlvkit serve | head -1`) must neither crash nor
// spin the server: writes to a closed standard stream are dropped.
let streamsClosed = false;
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", () => {
    streamsClosed = true;
  });
}

// An error that escapes every handler is a bug in tlvkit: report it in one line
// (once per distinct message, never recursively) and keep serving the sessions
// that are unaffected.
let reporting = false;
function reportEscaped(error: unknown): void {
  if (reporting || streamsClosed) return;
  reporting = true;
  try {
    process.stderr.write(`tlvkit: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
  } catch {
    // standard error is gone too: nothing left to tell
  } finally {
    reporting = false;
  }
}
process.on("uncaughtException", reportEscaped);
process.on("unhandledRejection", reportEscaped);

// No top-level await: the Node single executable (`npm run build:bin`) runs
// this file bundled as CommonJS, where it is a syntax error.
/**
 * The command-line arguments. In a Node single executable `argv[1]` is the
 * executable itself, and node:cluster (serve --workers) starts a worker as
 * `<executable> <entry> ...` with the entry being that same executable: drop
 * the repeat, which is never a command.
 */
function commandLine(): string[] {
  const args = process.argv.slice(2);
  return args[0] === process.execPath && process.argv[1] === process.execPath ? args.slice(1) : args;
}

void main(commandLine()).then((status) => {
  process.exitCode = status;
  // A node:cluster worker (serve --workers on Node) holds an IPC channel to its
  // supervisor, which would keep it running: let go of it.
  if (process.connected) process.disconnect?.();
  // End by letting the event loop run dry rather than with process.exit(), which
  // drops output a slow reader has not taken yet (Bun even reports no backlog to
  // wait for). Should anything still hold the loop, exit anyway after 5 s.
  setTimeout(() => process.exit(), 5000).unref();
});
