/**
 * Test the npm package as a user gets it: `npm pack` (which builds, see
 * `build-npm.ts`), install the tarball offline into a fresh temporary project
 * with no TypeScript tooling, then, through the installed package only:
 *
 * - run the README's "Your first server" snippet, extracted from README.md so
 *   the two never drift, with plain `node`, `deno run --allow-net` and `bun`;
 * - check that it holds what a user needs (README, LICENSE, CHANGELOG,
 *   docs/protocol.md, the JavaScript and `.d.ts` files) and no sources or tests;
 * - type-check a TypeScript consumer against the package's `.d.ts` files;
 * - run the `tlvkit` bin: `npx tlvkit --version`, and `serve` answering `send`
 *   and stopping on SIGTERM with status 0.
 *
 * Prints one line per check and exits 1 if any failed. The temporary folder and
 * every process it starts are gone when it ends. `npm test` runs it last.
 *
 * ```sh
 * npm run test:package
 * node --import tsx scripts/test-package.ts [--only node,deno,bun] [--keep]
 * ```
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { scriptArgs } from "./_script_args.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "node_modules", ".bin");
const USAGE = "Usage: test-package.ts [--only node,deno,bun] [--keep]";
const RUNTIMES = ["node", "deno", "bun"] as const;
const FIRST_SERVER_OUTPUT = "hello, world\n";

/**
 * The README's first-server snippet: the first ```js block after the
 * "Your first server" heading.
 *
 * @param readme The README's text.
 * @returns The snippet's code.
 */
export function firstServerSnippet(readme: string): string {
  const section = readme.split(/^## /m).find((part) => part.startsWith("Your first server"));
  const code = section && /^```js\n([\s\S]*?)^```$/m.exec(section)?.[1];
  if (!code) throw new Error('README.md has no ```js block under "## Your first server"');
  return code;
}

interface Outcome {
  ok: boolean;
  what: string;
  detail?: string;
}

const outcomes: Outcome[] = [];
const children = new Set<ChildProcess>();

function report(ok: boolean, what: string, detail?: string): void {
  outcomes.push(detail === undefined ? { ok, what } : { ok, what, detail });
  console.log(`${ok ? "ok    " : "FAILED"} ${what}${detail ? `: ${detail}` : ""}`);
}

function tool(name: string): string {
  return existsSync(join(BIN, name)) ? join(BIN, name) : name;
}

/** Run to completion (60 s at most); the output comes back as text. */
function run(command: string, args: string[], cwd: string): { code: number; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } });
  const stderr = result.error ? `${result.stderr ?? ""}${result.error.message}` : result.stderr;
  return { code: result.status ?? 1, stdout: result.stdout ?? "", stderr };
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}

/** Pack the repository into `dir`; returns the tarball's path. */
function pack(dir: string): string {
  const result = run("npm", ["pack", "--silent", "--pack-destination", dir], ROOT);
  const name = result.stdout.trim().split("\n").pop() ?? "";
  if (result.code !== 0 || !name.endsWith(".tgz")) throw new Error(`npm pack failed: ${firstLine(result.stderr) || result.stdout}`);
  return join(dir, name);
}

function checkContents(project: string): void {
  const pkg = join(project, "node_modules", "tlvkit");
  const files = spawnSync("find", [".", "-type", "f"], { cwd: pkg, encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  const stray = files.filter((file) => /\.ts$/.test(file) && !/\.d\.ts$/.test(file) || /(^|\/)(tests|scripts|examples|node_modules)\//.test(file));
  // docs/protocol.md: the wire format and session rules that the code comments cite.
  const needed = [
    "./package.json",
    "./README.md",
    "./LICENSE",
    "./CHANGELOG.md",
    "./docs/protocol.md",
    "./dist/npm/mod.js",
    "./dist/npm/mod.d.ts",
    "./dist/npm/src/cli.js",
  ];
  const missing = needed.filter((file) => !files.includes(file));
  report(missing.length === 0 && stray.length === 0, `package holds ${files.length} files: JavaScript, .d.ts, README, LICENSE, CHANGELOG, docs/protocol.md`,
    missing.length > 0 ? `missing ${missing.join(", ")}` : stray.length > 0 ? `unexpected ${stray.slice(0, 5).join(", ")}` : undefined);
}

function runFirstServer(project: string, runtimes: readonly string[]): void {
  const commands: Record<string, [string, string[]]> = {
    node: ["node", ["first-server.mjs"]],
    deno: [tool("deno"), ["run", "--quiet", "--allow-net", "first-server.mjs"]],
    bun: [tool("bun"), ["first-server.mjs"]],
  };
  for (const runtime of runtimes) {
    const [command, args] = commands[runtime]!;
    const result = run(command, args, project);
    const ok = result.code === 0 && result.stdout === FIRST_SERVER_OUTPUT;
    report(ok, `README first server, from the installed package, on ${runtime === "node" ? "plain node" : runtime}`,
      ok ? undefined : `exit ${result.code}, stdout ${JSON.stringify(result.stdout)}, stderr ${firstLine(result.stderr)}`);
  }
}

function typeCheck(project: string): void {
  writeFileSync(join(project, "consumer.ts"), `import { type Client, connect, type Frame, serve, type Server, type ServerStats } from "tlvkit";
import { type BundledApp, createBundledApp, HELLO_ID } from "tlvkit/cli";
const app: BundledApp = createBundledApp();
const bundled: Server = await serve({ port: 0, router: app.router, onError: app.onError });
await bundled.close();
const server: Server = await serve({ port: 0, idBytes: 2, byteOrder: "big" });
server.handle(1, (request) => { request.reply(request.body); });
const client: Client = await connect({ port: server.address.port });
const frame: Frame = await client.request(1, "hi");
const stats: ServerStats = server.stats();
const count: number = stats.closes["peer-closed"] + frame.id + HELLO_ID;
// @ts-expect-error: ids are numbers
server.handle("1", () => {});
export { count };
`);
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      lib: ["ES2022", "DOM"],
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      exactOptionalPropertyTypes: true,
      types: [],
      noEmit: true,
      skipLibCheck: false,
    },
    files: ["consumer.ts"],
  }));
  const result = run(tool("tsc"), ["-p", "."], project);
  report(result.code === 0, "TypeScript consumer type-checks against the .d.ts files (no @types/node)", result.code === 0 ? undefined : firstLine(result.stdout));
}

async function checkBin(project: string): Promise<void> {
  const version = run("npx", ["--offline", "--no-install", "tlvkit", "--version"], project);
  const expected = `tlvkit ${(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version}\n`;
  report(version.code === 0 && version.stdout === expected, "npx tlvkit --version", version.code === 0 ? undefined : firstLine(version.stderr));

  const bin = join(project, "node_modules", ".bin", "tlvkit");
  const serve = spawn(bin, ["serve", "--port", "0"], { cwd: project, stdio: ["ignore", "pipe", "pipe"] });
  children.add(serve);
  let stdout = "";
  let stderr = "";
  serve.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  serve.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => serve.on("close", (code) => {
    children.delete(serve);
    resolve(code);
  }));
  const started = Date.now();
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(stdout) && serve.exitCode === null && Date.now() - started < 20_000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const port = /listening on 127\.0\.0\.1:(\d+)/.exec(stdout)?.[1];
  if (port === undefined) {
    report(false, "tlvkit serve (bin, plain node) prints its listening line", firstLine(stderr) || "nothing printed in 20 s");
    serve.kill("SIGKILL");
    await exited;
    return;
  }
  const send = run(bin, ["send", "--port", port, "--json", '{"id":5,"data":"hi"}'], project);
  const reply = 'id=5 length=57 text={"id":5,"data":"server has received msg, msg data is hi"}\n';
  report(send.code === 0 && send.stdout === reply, "tlvkit send gets tlvkit serve's HELLO reply (bin, plain node)",
    send.code === 0 ? undefined : `exit ${send.code}: ${firstLine(send.stderr)}`);
  serve.kill("SIGTERM");
  const code = await exited;
  report(code === 0, "tlvkit serve exits 0 on SIGTERM", code === 0 ? undefined : `exit ${code}: ${firstLine(stderr)}`);
}

async function main(): Promise<number> {
  const values = scriptArgs("test-package", USAGE, { only: { type: "string" }, keep: { type: "boolean" } }, (v) => {
    for (const name of v.only?.split(",") ?? []) {
      if (!(RUNTIMES as readonly string[]).includes(name)) throw new Error(`unknown runtime "${name}" in --only (use node, deno, bun)`);
    }
  });
  const runtimes = values.only?.split(",") ?? [...RUNTIMES];
  const dir = mkdtempSync(join(tmpdir(), "tlvkit-package-"));
  try {
    const tarball = pack(dir);
    report(true, `npm pack built and packed ${tarball.slice(dir.length + 1)}`);
    const project = join(dir, "project");
    spawnSync("mkdir", [project]);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "tlvkit-package-test", private: true, type: "module" }, null, 2));
    const install = run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--silent", tarball], project);
    report(install.code === 0, "npm install --offline of the tarball into a fresh project", install.code === 0 ? undefined : firstLine(install.stderr));
    if (install.code !== 0) return 1;
    checkContents(project);
    writeFileSync(join(project, "first-server.mjs"), firstServerSnippet(readFileSync(join(ROOT, "README.md"), "utf8")));
    runFirstServer(project, runtimes);
    typeCheck(project);
    await checkBin(project);
  } catch (error) {
    report(false, "package test", error instanceof Error ? error.message : String(error));
  } finally {
    for (const child of children) child.kill("SIGKILL");
    if (values.keep) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const failed = outcomes.filter((outcome) => !outcome.ok).length;
  console.log(`test-package: ${outcomes.length - failed} ok, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
