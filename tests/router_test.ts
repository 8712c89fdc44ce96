import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Handler, Router } from "../mod.ts";

const named = (): Handler => () => {};

describe("Router", () => {
  it("routes each id to its own handler, small and large ids alike, and the rest to the fallback", () => {
    const small = named();
    const zero = named();
    const large = named();
    const largest = named();
    const fallback = named();
    const router = new Router().handle(7, small).handle(0, zero).handle(5000, large).handle(4_294_967_295, largest);
    assert.equal(router.route(7), small);
    assert.equal(router.route(0), zero);
    assert.equal(router.route(5000), large);
    assert.equal(router.route(4_294_967_295), largest);
    // Unrouted: below the highest small id, above it, and among the large ones.
    for (const id of [1, 6, 8, 4095, 4096, 4999, 5001, 65535]) assert.equal(router.route(id), undefined, `id ${id}`);
    router.fallback(fallback);
    for (const id of [1, 6, 8, 4095, 4096, 4999, 5001, 65535]) assert.equal(router.route(id), fallback, `id ${id}`);
    assert.equal(router.route(7), small);
    assert.equal(router.route(5000), large);
  });

  it("falls back for every id when only small ids are routed, and when none are", () => {
    const fallback = named();
    assert.equal(new Router().route(3), undefined);
    assert.equal(new Router().fallback(fallback).route(70_000), fallback);
    const router = new Router().handle(1001, named()).fallback(fallback);
    for (const id of [0, 1000, 1002, 4096, 65535, 70_000]) assert.equal(router.route(id), fallback, `id ${id}`);
  });

  it("refuses a second handler for an id, small or large, and bad ids and handlers", () => {
    const router = new Router().handle(3, named()).handle(9000, named());
    assert.throws(() => router.handle(3, named()), /message id 3 already has one/);
    assert.throws(() => router.handle(9000, named()), /message id 9000 already has one/);
    assert.throws(() => router.handle(-1, named()), RangeError);
    assert.throws(() => router.handle(1.5, named()), RangeError);
    assert.throws(() => router.handle(2, "nope" as unknown as Handler), TypeError);
    assert.throws(() => router.fallback(undefined as unknown as Handler), TypeError);
    // A refused registration changes nothing.
    assert.equal(router.route(2), undefined);
  });
});
