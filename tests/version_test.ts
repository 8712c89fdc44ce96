import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { VERSION } from "../mod.ts";

function versionIn(file: string): string {
  const json = JSON.parse(readFileSync(new URL(`../${file}`, import.meta.url), "utf8")) as { version: string };
  return json.version;
}

describe("VERSION", () => {
  it("matches package.json and deno.json", () => {
    assert.match(VERSION, /^\d+\.\d+\.\d+(-[\w.]+)?$/);
    assert.equal(versionIn("package.json"), VERSION);
    assert.equal(versionIn("deno.json"), VERSION);
  });
});
