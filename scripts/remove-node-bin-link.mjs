/**
 * Removes `node_modules/.bin/node`; package.json's `prepare` script, which
 * `npm ci` and `npm install` run in this repository (never where the package
 * is installed from the registry). The `node22` and `node24` dev dependencies
 * (Node binaries from npm, for `npm test -- --node 20,22,24`) each declare a
 * `node` bin, and npm, Deno and Bun put `node_modules/.bin` first on PATH when
 * they run a script: left there, it would replace the machine's node in every
 * package.json script (`npm test`, `npm run test:bin`, ...). The binaries stay
 * where test-all.ts looks for them, `node_modules/node22/bin/node` and
 * `node_modules/node24/bin/node`.
 *
 * Plain JavaScript, so that it runs without tsx.
 *
 * @module
 */

import { rmSync } from "node:fs";

rmSync(new URL("../node_modules/.bin/node", import.meta.url), { force: true });
