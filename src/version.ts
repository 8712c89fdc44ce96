/**
 * The package version, kept equal to `package.json` and `deno.json` (a test
 * checks), so that the CLI needs no file access to report it.
 *
 * @module
 */

/** The tlvkit version. */
export const VERSION = "0.1.0";
