/**
 * Option parsing for the scripts (the single-binary ones, `bench-ab.ts`,
 * `bench-hotpath.ts`): `--help` prints the usage and exits 0; a bad option,
 * or a value `check` rejects, prints one line and the usage and exits 2.
 *
 * @module
 */

import process from "node:process";
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values<T extends Options> = ReturnType<typeof parseArgs<{ options: T }>>["values"];

/**
 * Parse this process's arguments.
 *
 * @param script The script's name, to start error lines with.
 * @param usage The usage line.
 * @param options The options, as for `parseArgs` (`--help` is added).
 * @param check Throws on values that parse but make no sense.
 * @returns The option values.
 */
export function scriptArgs<const T extends Options>(script: string, usage: string, options: T, check: (values: Values<T>) => void = () => {}): Values<T> {
  try {
    const { values } = parseArgs({ args: process.argv.slice(2), options: { ...options, help: { type: "boolean", short: "h" } } as Options });
    if (values["help"] === true) {
      console.log(usage);
      process.exit(0);
    }
    const parsed = values as Values<T>;
    check(parsed);
    return parsed;
  } catch (error) {
    console.error(`${script}: ${error instanceof Error ? error.message : String(error)}\n${usage}`);
    process.exit(2);
  }
}
