/**
 * Turning command-line option text into checked values, with one-line errors.
 *
 * @module
 */

import process from "node:process";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { FrameLayout, type FrameLayoutOptions } from "../frame_layout.ts";
import { VERSION } from "../version.ts";

/** A bad command line: printed as one line, exit status 2. */
export class UsageError extends Error {
  /** @param message What is wrong and how to fix it. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** An integer option within [min, max]. */
export function integerOption(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim())) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  const value = Number(text.trim());
  if (value < min || value > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${value}`);
  return value;
}

/** A non-negative number of seconds (decimals allowed), returned in milliseconds. */
export function secondsOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^\d+(\.\d+)?$/.test(trimmed)) throw new UsageError(`--${name} must be a number of seconds (0 or more), got "${text}"`);
  const ms = Math.round(Number(trimmed) * 1000);
  if (ms > 2 ** 31 - 1) throw new UsageError(`--${name} must be at most ${Math.floor((2 ** 31 - 1) / 1000)} seconds, got ${trimmed}`);
  return ms;
}

/** One of a fixed set of words. */
export function choiceOption<T extends string>(name: string, text: string | undefined, choices: readonly T[]): T | undefined {
  if (text === undefined) return undefined;
  if (!(choices as readonly string[]).includes(text)) {
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got "${text}"`);
  }
  return text as T;
}

/** The layout options shared by `serve` and `send`. */
export interface LayoutFlags {
  "id-bytes"?: string | undefined;
  "length-bytes"?: string | undefined;
  "little-endian"?: boolean | undefined;
  "max-body"?: string | undefined;
}

/** Build and check the frame layout from the layout flags. */
export function layoutFromFlags(flags: LayoutFlags): FrameLayout {
  const options: FrameLayoutOptions = {};
  const idBytes = choiceOption("id-bytes", flags["id-bytes"], ["0", "1", "2", "4"]);
  const lengthBytes = choiceOption("length-bytes", flags["length-bytes"], ["1", "2", "4"]);
  if (idBytes !== undefined) options.idBytes = Number(idBytes) as 0 | 1 | 2 | 4;
  if (lengthBytes !== undefined) options.lengthBytes = Number(lengthBytes) as 1 | 2 | 4;
  if (flags["little-endian"]) options.byteOrder = "little";
  const lengthLimit = 2 ** (8 * (options.lengthBytes ?? 2)) - 1;
  const maxBodyText = flags["max-body"];
  if (maxBodyText !== undefined) {
    if (!/^\d+$/.test(maxBodyText.trim())) throw new UsageError(`--max-body must be a non-negative integer, got "${maxBodyText}"`);
    const maxBody = Number(maxBodyText.trim());
    if (maxBody > lengthLimit) {
      throw new UsageError(
        `--max-body ${maxBody} exceeds ${lengthLimit}, the largest a ${options.lengthBytes ?? 2}-byte length field holds`,
      );
    }
    options.maxBody = maxBody;
  }
  return new FrameLayout(options);
}

/** Option definitions for node:util parseArgs, shared by the layout flags. */
export const LAYOUT_OPTIONS = {
  "id-bytes": { type: "string" },
  "length-bytes": { type: "string" },
  "little-endian": { type: "boolean" },
  "max-body": { type: "string" },
} as const;

/** Option definitions every command has: `--help` and `--version`. */
export const STANDARD_OPTIONS = {
  help: { type: "boolean" },
  version: { type: "boolean" },
} as const;

/** Help lines for `--help` and `--version`. */
export const STANDARD_HELP = `  --help               show this help
  --version            show the version`;

/** Help lines for the layout flags. */
export const LAYOUT_HELP = `  --id-bytes N         width of the id field: 0, 1, 2 or 4 (0 = length-only frames)  [2]
  --length-bytes N     width of the length field: 1, 2 or 4                        [2]
  --little-endian      header fields little-endian                                 [big-endian]
  --max-body N         largest body accepted, bytes                                [65535; 64 MiB with 4-byte lengths]`;

/**
 * Rewrite node:util parseArgs errors as one short line naming the option.
 *
 * @param error What parseArgs threw.
 * @param command The command, for the hint.
 */
export function parseArgsError(error: unknown, command: string): UsageError {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const option = /'(-[^']*)'/.exec(message)?.[1] ?? /"(-[^"]*)"/.exec(message)?.[1];
  const hint = `see tlvkit ${command} --help`;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option) return new UsageError(`unknown option ${option} (${hint})`);
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
    const name = option.split(" ")[0]!;
    if (/argument missing/.test(message)) return new UsageError(`option ${name} needs a value (${hint})`);
    // "--port -1": parseArgs will not take a value that starts with a dash unless it follows "=".
    if (/ambiguous/.test(message)) return new UsageError(`option ${name} needs a value; write ${name}=VALUE for one that starts with "-" (${hint})`);
    return new UsageError(`option ${name} takes no value (${hint})`);
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    const arg = /'([^']*)'/.exec(message)?.[1];
    return new UsageError(`unexpected argument${arg ? ` "${arg}"` : ""} (${hint})`);
  }
  return new UsageError(`${message.split("\n")[0]} (${hint})`);
}

/**
 * Print the command's help or the version when asked (`--help` wins).
 *
 * @param values Parsed flags.
 * @param help The command's help text.
 * @returns `true` when something was printed and the command should exit 0.
 */
export function answeredHelpOrVersion(values: { help?: boolean | undefined; version?: boolean | undefined }, help: string): boolean {
  if (values.help) process.stdout.write(help);
  else if (values.version) process.stdout.write(`tlvkit ${VERSION}\n`);
  else return false;
  return true;
}

/** What {@link parseCommandArgs} returns: the flag values parseArgs types for `O`. */
export type ParsedFlags<O extends NonNullable<ParseArgsConfig["options"]>> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>["values"];

/**
 * Parse a command's arguments strictly (no positionals), turning parseArgs
 * errors into one-line usage errors.
 *
 * @param command The command, for the error hint.
 * @param args The arguments after the command.
 * @param options The command's option definitions.
 * @returns The parsed flag values.
 */
export function parseCommandArgs<const O extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  args: string[],
  options: O,
): ParsedFlags<O> {
  // `deno task start -- --workers 2` passes the `--` on (npm strips it): no
  // command takes positionals, so a leading one ends nothing.
  const given = args[0] === "--" ? args.slice(1) : args;
  try {
    return parseArgs({ args: given, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw parseArgsError(error, command);
  }
}
