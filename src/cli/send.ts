/**
 * `tlvkit send`: send frames to a server and print each reply.
 *
 * @module
 */

import { DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SEND_TIMEOUT } from "../_defaults.ts";
import process from "node:process";
import { HELLO_ID } from "../bundled_app.ts";
import { connect } from "../client.ts";
import type { Frame } from "../frame_decoder.ts";
import { decodeUtf8 } from "../_utf8.ts";
import {
  answeredHelpOrVersion,
  integerOption,
  LAYOUT_HELP,
  LAYOUT_OPTIONS,
  layoutFromFlags,
  parseCommandArgs,
  secondsOption,
  STANDARD_HELP,
  STANDARD_OPTIONS,
  UsageError,
} from "./options.ts";

/** `send --help`. */
export const SEND_HELP = `Usage: tlvkit send [options]

Send frames to a server and print each reply as
  id=ID length=N text=BODY     (body valid UTF-8)
  id=ID length=N hex=BODY      (otherwise)
Exits 0 when every reply arrived, 1 otherwise.

Options:                                                                         [default]
  --host H             server address                                              [127.0.0.1]
  --port P             server port                                                 [${DEFAULT_PORT}]
  --id N               message id                                                  [0; 1001 with --json]
  --data TEXT          body: TEXT as UTF-8
  --json TEXT          body: TEXT as UTF-8 (a HELLO: {"id": 1, "data": "hi"})
  --hex HEX            body: bytes written as hex ("0a ff" or "0aff")
  --count N            send the frame N times, expect N replies                    [1]
  --timeout S          seconds to wait for all replies                             [${DEFAULT_SEND_TIMEOUT / 1000}]
${LAYOUT_HELP}
${STANDARD_HELP}
`;

const SEND_OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  id: { type: "string" },
  data: { type: "string" },
  json: { type: "string" },
  hex: { type: "string" },
  count: { type: "string" },
  timeout: { type: "string" },
  ...LAYOUT_OPTIONS,
  ...STANDARD_OPTIONS,
} as const;

function hexBody(text: string): Uint8Array {
  const clean = text.replace(/[\s:]/g, "").replace(/^0x/i, "");
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) {
    throw new UsageError(`--hex must be pairs of hex digits, got "${text}"`);
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** One reply, as `send` prints it. */
export function formatReply(frame: Frame): string {
  let text: string | undefined;
  try {
    text = decodeUtf8(frame.body);
  } catch {
    text = undefined;
  }
  const head = `id=${frame.id} length=${frame.body.length}`;
  // Text with control characters (other than tab and line breaks) prints as hex.
  // deno-lint-ignore no-control-regex
  if (text !== undefined && !/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) return `${head} text=${text}`;
  return `${head} hex=${Array.from(frame.body, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * Run `send`.
 *
 * @param args The arguments after `send`.
 * @returns The exit status: 0 when every reply arrived.
 */
export async function runSend(args: string[]): Promise<number> {
  const values = parseCommandArgs("send", args, SEND_OPTIONS);
  if (answeredHelpOrVersion(values, SEND_HELP)) return 0;
  const layout = layoutFromFlags(values);
  const host = values.host ?? DEFAULT_HOST;
  const port = integerOption("port", values.port, 1, 65535) ?? DEFAULT_PORT;
  const count = integerOption("count", values.count, 1, 10_000_000) ?? 1;
  const timeout = secondsOption("timeout", values.timeout) ?? DEFAULT_SEND_TIMEOUT;
  const bodies = [values.data, values.json, values.hex].filter((v) => v !== undefined);
  if (bodies.length > 1) throw new UsageError("use only one of --data, --json, --hex");
  const id = integerOption("id", values.id, 0, layout.maxId) ?? (values.json !== undefined ? HELLO_ID : 0);
  if (id > layout.maxId) throw new UsageError(`--id ${id} does not fit a ${layout.idBytes}-byte id field`);
  const body = values.hex !== undefined
    ? hexBody(values.hex)
    : new TextEncoder().encode(values.data ?? values.json ?? "");
  if (body.length > layout.maxBody) {
    throw new UsageError(`the body is ${body.length} bytes, over --max-body ${layout.maxBody}`);
  }

  let received = 0;
  let allArrived!: () => void;
  const done = new Promise<void>((resolve) => {
    allArrived = resolve;
  });
  const client = await connect({
    host,
    port,
    idBytes: layout.idBytes,
    lengthBytes: layout.lengthBytes,
    byteOrder: layout.byteOrder,
    maxBody: layout.maxBody,
    onFrame: (frame) => {
      process.stdout.write(`${formatReply(frame)}\n`);
      if (++received === count) allArrived();
    },
  });
  void client.closed.then(() => allArrived());
  for (let i = 0; i < count; i++) {
    if (!client.send(id, body)) await client.writable();
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeout)))]);
  clearTimeout(timer);
  const closedEarly = client.isClosed;
  if (received >= count) await client.close();
  else client.abort();
  const { reason } = await client.closed;
  if (received < count) {
    const why = closedEarly ? `the server closed the connection (${reason})` : `timed out after ${timeout / 1000} s`;
    process.stderr.write(`tlvkit send: ${received} of ${count} replies arrived; ${why}\n`);
    return 1;
  }
  return 0;
}
