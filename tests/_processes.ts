/**
 * Starting tlvkit's command line and fixtures as child processes under any of
 * the three runtimes, from whichever runtime runs the tests; and making sure
 * every child is gone when a test ends.
 *
 * @module
 */

import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { RuntimeName } from "../src/transport/types.ts";
import { deferred, within } from "./_async.ts";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

function bin(name: string): string {
  const local = join(ROOT, "node_modules", ".bin", name);
  return existsSync(local) ? local : name;
}

/** The command that runs TypeScript file `file` (relative to the root) under `runtime`. */
export function runtimeCommand(runtime: RuntimeName, file: string, denoPermissions: string[] = ["--allow-net"]): string[] {
  switch (runtime) {
    case "node":
      return ["node", "--import", "tsx", file];
    case "deno":
      return [bin("deno"), "run", "--quiet", ...denoPermissions, file];
    case "bun":
      return [bin("bun"), file];
  }
}

/** A child process with its output collected. */
export interface Child {
  readonly process: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (or 128 + signal number style text) when it exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first stdout line matching `pattern`. */
  waitFor(pattern: RegExp, ms: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): void;
}

const running = new Set<ChildProcess>();
const finished: Child[] = [];

/**
 * Lines in which a child reported an error that escaped every handler
 * (`tlvkit: internal error: ...`, printed by the CLI's last-resort hooks).
 * A test run must end with none.
 */
export function escapedErrors(): string[] {
  return finished.flatMap((child) => child.stderr.split("\n").filter((line) => line.includes("internal error")));
}

/** How to start a child: through `/bin/sh`, in which folder, with which environment. */
export interface StartOptions {
  /** Run the command joined into one `/bin/sh -c` line. @default false */
  shell?: boolean;
  /** The working folder. @default the repository root */
  cwd?: string;
  /** The whole environment. @default this process's */
  env?: NodeJS.ProcessEnv;
  /** `pipe`: the test writes the child's standard input (`child.process.stdin`). @default "ignore" */
  stdin?: "ignore" | "pipe";
}

/** Start `command` with its output collected. Remember to `stopAll()` in an `after`. */
export function start(command: string[], options: StartOptions = {}): Child {
  const [file, ...args] = command;
  const spawnOptions: SpawnOptions = { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: [options.stdin ?? "ignore", "pipe", "pipe"] };
  const child = options.shell
    ? spawn("/bin/sh", ["-c", command.join(" ")], spawnOptions)
    : spawn(file!, args, spawnOptions);
  running.add(child);
  const exited = deferred<{ code: number | null; signal: NodeJS.Signals | null }>();
  const result: Child = {
    process: child,
    stdout: "",
    stderr: "",
    exited: exited.promise,
    async waitFor(pattern: RegExp, ms: number): Promise<RegExpMatchArray> {
      const found = deferred<RegExpMatchArray>();
      const check = (): void => {
        const match = pattern.exec(result.stdout);
        if (match) found.resolve(match);
      };
      child.stdout!.on("data", check);
      void exited.promise.then(() => found.reject(new Error(`process exited before printing ${pattern}; stderr: ${result.stderr}`)));
      check();
      try {
        return await within(found.promise, ms, `${pattern} on stdout (stderr so far: ${result.stderr.slice(-500)})`);
      } finally {
        child.stdout!.off("data", check);
      }
    },
    kill(signal: NodeJS.Signals = "SIGTERM"): void {
      // process.kill rather than child.kill: Deno's node:child_process reports a
      // child it was asked to kill as killed by that signal even when the child
      // handled it and exited 0, hiding the exit status under test.
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, signal);
        } catch {
          // already gone
        }
      }
    },
  };
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (text: string) => (result.stdout += text));
  child.stderr!.on("data", (text: string) => (result.stderr += text));
  child.on("close", (code, signal) => {
    running.delete(child);
    finished.push(result);
    exited.resolve({ code, signal });
  });
  child.on("error", (error) => {
    running.delete(child);
    result.stderr += String(error);
    exited.resolve({ code: 127, signal: null });
  });
  return result;
}

/** Kill every child still running and wait for them to exit. */
export async function stopAll(): Promise<void> {
  const children = [...running];
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("close", () => resolve());
  })));
}

/** Run a command to completion and return its output. */
export async function runToEnd(
  command: string[],
  ms = 60_000,
  options: StartOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = start(command, options);
  const { code } = await within(child.exited, ms, `${command.join(" ")} to exit`);
  return { code, stdout: child.stdout, stderr: child.stderr };
}
