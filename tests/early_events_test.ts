import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EarlyEvents } from "../src/transport/_early_events.ts";

describe("EarlyEvents", () => {
  it("delivers the events kept, in order, and the close last", () => {
    const early = new EarlyEvents();
    const log: string[] = [];
    early.add(() => log.push("data 1"));
    early.addClose(() => log.push("close"));
    early.add(() => log.push("data 2"));
    early.add(() => log.push("end"));
    early.replay(() => true, () => assert.fail("nothing throws"));
    assert.deepEqual(log, ["data 1", "data 2", "end", "close"], "closed all along: every event before the close");
  });

  it("does nothing when nothing was kept, and forgets what it delivered", () => {
    const early = new EarlyEvents();
    const log: string[] = [];
    early.replay(() => false, () => assert.fail("nothing throws"));
    early.add(() => log.push("drain"));
    early.replay(() => false, () => assert.fail("nothing throws"));
    early.replay(() => false, () => assert.fail("nothing throws"));
    assert.deepEqual(log, ["drain"]);
  });

  it("ends the replay at a handler that throws, handing on what it threw, and still delivers the close", () => {
    const early = new EarlyEvents();
    const log: string[] = [];
    const oops = new Error("handler failed");
    early.add(() => log.push("data 1"));
    early.add(() => {
      log.push("data 2");
      throw oops;
    });
    early.add(() => log.push("end"));
    early.addClose(() => log.push("close"));
    const thrown: unknown[] = [];
    early.replay(() => true, (error) => thrown.push(error));
    assert.deepEqual(log, ["data 1", "data 2", "close"]);
    assert.deepEqual(thrown, [oops]);
  });

  it("ends the replay at a handler that closes the connection, which reports that close itself", () => {
    const early = new EarlyEvents();
    const log: string[] = [];
    let closed = false;
    early.add(() => log.push("data 1"));
    early.add(() => {
      log.push("data 2");
      closed = true; // an abort() in the handler
    });
    early.add(() => log.push("end"));
    early.replay(() => closed, () => assert.fail("nothing throws"));
    assert.deepEqual(log, ["data 1", "data 2"]);
  });

  it("ends the replay at a handler that throws when nothing closed", () => {
    const early = new EarlyEvents();
    const log: string[] = [];
    early.add(() => {
      throw "not an Error";
    });
    early.add(() => log.push("drain"));
    const thrown: unknown[] = [];
    early.replay(() => false, (error) => thrown.push(error));
    assert.deepEqual(thrown, ["not an Error"]);
    assert.deepEqual(log, []);
  });
});
