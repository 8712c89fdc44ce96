/**
 * A request/response service with several message ids and a typed client.
 *
 * One interface, `Api`, lists the methods: each has a message id, a params
 * type and a result type. The server registers a handler per method; the
 * client's `call("add", { a: 2, b: 3 })` is checked against the same
 * interface, so a wrong params shape or result use is a compile error. Bodies
 * are JSON. A handler that throws answers on id 65535 (ERROR) with
 * `{"error": "..."}`, and the client rejects with an `RpcError`.
 *
 * Replies on one connection come back in request order, so several calls can
 * be in flight at once on one connection (the demo sends four together).
 * Run it with:
 *
 * ```sh
 * node --import tsx examples/rpc_service.ts
 * deno run --allow-net examples/rpc_service.ts
 * bun examples/rpc_service.ts
 * ```
 *
 * @module
 */

import { type Client, connect, type Request, serve, type Server, type ServerStats } from "../mod.ts";
import { ERROR_ID } from "../cli.ts";

/** The service's methods: message id, params and result. */
interface Api {
  add: { id: 10; params: { a: number; b: number }; result: number };
  divide: { id: 11; params: { a: number; b: number }; result: number };
  shout: { id: 12; params: string; result: string };
  stats: { id: 13; params: null; result: ServerStats };
}
type Method = keyof Api;

const IDS: { [M in Method]: Api[M]["id"] } = { add: 10, divide: 11, shout: 12, stats: 13 };

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The error a call rejects with when the server answered on the ERROR id. */
class RpcError extends Error {
  readonly method: Method;
  constructor(method: Method, message: string) {
    super(`${method} failed: ${message}`);
    this.name = "RpcError";
    this.method = method;
  }
}

/** Register `implementation` for `method`: JSON in, JSON out, a throw becomes an ERROR frame. */
function handle<M extends Method>(
  server: Server,
  method: M,
  implementation: (params: Api[M]["params"]) => Api[M]["result"] | Promise<Api[M]["result"]>,
): void {
  server.handle(IDS[method], async (request: Request) => {
    try {
      const result = await implementation(JSON.parse(request.text()) as Api[M]["params"]);
      request.reply(JSON.stringify(result));
    } catch (error) {
      request.reply(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }), ERROR_ID);
    }
  });
}

/** A client whose calls are typed by {@link Api}. */
class ServiceClient {
  readonly #client: Client;

  private constructor(client: Client) {
    this.#client = client;
  }

  static async connect(port: number): Promise<ServiceClient> {
    return new ServiceClient(await connect({ port }));
  }

  async call<M extends Method>(method: M, params: Api[M]["params"]): Promise<Api[M]["result"]> {
    const reply = await this.#client.request(IDS[method], utf8.encode(JSON.stringify(params)), { timeout: 5000 });
    const body = JSON.parse(text.decode(reply.body)) as unknown;
    if (reply.id === ERROR_ID) throw new RpcError(method, (body as { error: string }).error);
    return body as Api[M]["result"];
  }

  close(): Promise<unknown> {
    return this.#client.close();
  }
}

async function demo(): Promise<void> {
  const server = await serve({ port: 0 });
  handle(server, "add", ({ a, b }) => a + b);
  handle(server, "divide", ({ a, b }) => {
    if (b === 0) throw new Error("division by zero");
    return a / b;
  });
  handle(server, "shout", async (words) => {
    await new Promise((resolve) => setTimeout(resolve, 20)); // slow on purpose: order still holds
    return `${words.toUpperCase()}!`;
  });
  handle(server, "stats", () => server.stats());

  const client = await ServiceClient.connect(server.address.port);
  // Four calls in flight at once; the slow one does not let the others overtake it.
  const [sum, quotient, shouted, sum2] = await Promise.all([
    client.call("add", { a: 2, b: 3 }),
    client.call("divide", { a: 1, b: 4 }),
    client.call("shout", "hello"),
    client.call("add", { a: 40, b: 2 }),
  ]);
  console.log(`add(2, 3) = ${sum}`);
  console.log(`divide(1, 4) = ${quotient}`);
  console.log(`shout("hello") = ${shouted}`);
  console.log(`add(40, 2) = ${sum2}`);
  try {
    await client.call("divide", { a: 1, b: 0 });
  } catch (error) {
    console.log(`divide(1, 0) threw ${(error as RpcError).name}: ${(error as RpcError).message}`);
  }
  const stats = await client.call("stats", null);
  console.log(`stats: ${stats.openSessions} session open, ${stats.framesIn} frames in, ${stats.framesOut} out (this reply not yet counted)`);
  await client.close();
  await server.close();
}

await demo();
