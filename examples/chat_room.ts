/**
 * A chat room: the two-way server tlvkit's design grew into. Clients do not
 * only ask and get answers; the server pushes to them (a welcome, who joined
 * and left) and broadcasts every line said to everyone in the room.
 *
 * Message ids (client → server): JOIN 1 (body: your name), SAY 2 (body: text).
 * Server → client: WELCOME 1 (reply to JOIN), NOTICE 3 ("* bob joined"),
 * LINE 4 ("alice: hi"). Names live in `session.data`.
 *
 * The demo starts the room on a free port, lets alice and bob talk, and prints
 * what each of them saw. Run it with:
 *
 * ```sh
 * node --import tsx examples/chat_room.ts
 * deno run --allow-net examples/chat_room.ts
 * bun examples/chat_room.ts
 * ```
 *
 * One room on two nodes, one on Node and one on Bun, joined over Redis (the
 * `redis` package must be installed): every line said on either reaches the
 * members of both. `--join PORT --name NAME` is a member: it prints what the
 * room says and says each line typed.
 *
 * ```sh
 * redis-server --port 6379 --save '' &
 * node --import tsx examples/chat_room.ts --port 7001 --cluster redis://127.0.0.1:6379 --node-id a &
 * bun examples/chat_room.ts --port 7002 --cluster redis://127.0.0.1:6379 --node-id b &
 * node --import tsx examples/chat_room.ts --join 7001 --name alice   # in one terminal
 * bun examples/chat_room.ts --join 7002 --name bob                   # in another
 * ```
 *
 * @module
 */

import process from "node:process";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { type Client, type ClusterOptions, connect, type Frame, serve, type Server, type Session } from "../mod.ts";

const JOIN = 1;
const SAY = 2;
const WELCOME = 1;
const NOTICE = 3;
const LINE = 4;

const text = new TextDecoder();

/**
 * Start the room: the server and its handlers. In a cluster, lines and
 * notices reach the members of every node; "here" lists this node's.
 */
async function startChatRoom(port = 0, cluster?: ClusterOptions): Promise<Server> {
  const nameOf = (session: Session): string | undefined => session.data as string | undefined;
  const server = await serve({
    port,
    ...(cluster === undefined ? {} : { cluster }),
    onSessionClose: (session) => {
      const name = nameOf(session);
      if (name !== undefined) server.broadcast(NOTICE, `* ${name} left`);
    },
  });
  server.handle(JOIN, (request) => {
    const name = request.text().trim() || `guest${request.session.id}`;
    const others = [...server.sessions.values()].map(nameOf).filter((other) => other !== undefined);
    request.session.data = name;
    request.reply(`welcome ${name}; here: ${others.length > 0 ? others.join(", ") : "nobody yet"}`, WELCOME);
    // A push to every other member, on every node: not a reply, so a member
    // that stopped reading long ago is closed as a slow consumer rather than
    // buffered forever.
    server.broadcast(NOTICE, `* ${name} joined`, { except: request.session.id });
  });
  server.handle(SAY, (request) => {
    const name = nameOf(request.session);
    if (name === undefined) request.reply("join first (id 1)", NOTICE);
    else server.broadcast(LINE, `${name}: ${request.text()}`);
  });
  return server;
}

/** A member of the room: every frame the server pushes becomes a line of its transcript. */
class Member {
  readonly lines: string[] = [];
  #waiting: Array<{ matches: (line: string) => boolean; resolve: () => void }> = [];
  #client!: Client;

  static async join(port: number, name: string): Promise<Member> {
    const member = new Member();
    member.#client = await connect({ port, onFrame: (frame) => member.#receive(frame) });
    const welcomed = member.saw(`welcome ${name}`, true);
    member.#client.send(JOIN, name);
    await welcomed;
    return member;
  }

  say(line: string): void {
    this.#client.send(SAY, line);
  }

  /** Resolves when a line equal to (or, with `prefix`, starting with) `line` has arrived. */
  saw(line: string, prefix = false): Promise<void> {
    const matches = (got: string): boolean => prefix ? got.startsWith(line) : got === line;
    if (this.lines.some(matches)) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push({ matches, resolve }));
  }

  leave(): Promise<unknown> {
    return this.#client.close();
  }

  #receive(frame: Frame): void {
    const line = text.decode(frame.body);
    this.lines.push(line);
    for (const waiter of this.#waiting.filter((w) => w.matches(line))) waiter.resolve();
    this.#waiting = this.#waiting.filter((w) => !w.matches(line));
  }
}

async function demo(): Promise<void> {
  const server = await startChatRoom();
  const { port } = server.address;
  const alice = await Member.join(port, "alice");
  const bob = await Member.join(port, "bob");
  await alice.saw("* bob joined");
  alice.say("hi bob");
  await Promise.all([alice.saw("alice: hi bob"), bob.saw("alice: hi bob")]);
  bob.say("hi alice, bye!");
  await Promise.all([alice.saw("bob: hi alice, bye!"), bob.saw("bob: hi alice, bye!")]);
  await bob.leave();
  await alice.saw("* bob left");
  await alice.leave();
  console.log(`alice saw:\n  ${alice.lines.join("\n  ")}`);
  console.log(`bob saw:\n  ${bob.lines.join("\n  ")}`);
  await server.close();
}

/** One node of a room, until SIGINT or SIGTERM. */
async function serveRoom(port: number, cluster: ClusterOptions | undefined): Promise<void> {
  const server = await startChatRoom(port, cluster);
  console.log(`chat room on ${server.address.host}:${server.address.port} (node ${server.cluster.node})`);
  const stop = (): void => {
    void server.close({ drainTimeout: 1000 }).then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

/** A member at a terminal: prints what the room says, says each line typed, leaves at the end of input. */
async function member(port: number, name: string): Promise<void> {
  const client = await connect({ port, onFrame: (frame) => console.log(text.decode(frame.body)) });
  client.send(JOIN, name);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== "") client.send(SAY, line);
  }
  await client.close();
}

function fail(message: string): never {
  console.error(`chat_room: ${message}`);
  process.exit(2);
}

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    port: { type: "string" },
    cluster: { type: "string" },
    "node-id": { type: "string" },
    join: { type: "string" },
    name: { type: "string" },
  },
});
const portOf = (text: string): number => {
  const port = Number(text);
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) fail(`a port is an integer from 0 to 65535, got "${text}"`);
  return port;
};
if (values.join !== undefined) {
  await member(portOf(values.join), values.name ?? "guest");
} else if (values.port !== undefined || values.cluster !== undefined) {
  const node = values["node-id"];
  const cluster: ClusterOptions | undefined = values.cluster === undefined
    ? undefined
    : node === undefined ? { redis: values.cluster } : { redis: values.cluster, node };
  try {
    await serveRoom(portOf(values.port ?? "10086"), cluster);
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
} else {
  await demo();
}
