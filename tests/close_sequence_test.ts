import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CLOSE,
  CLOSED,
  type CloseState,
  type CloseStep,
  END_CALLED,
  ENDED,
  ENDING,
  ENDING_AFTER_PEER,
  FIN_OUT,
  FIN_SENT,
  nextState,
  OPEN,
  PEER_ENDED,
  PEER_FIN,
} from "../src/transport/_close_sequence.ts";

const STATES = [OPEN, PEER_ENDED, ENDING, ENDING_AFTER_PEER, FIN_SENT, ENDED, CLOSED];
const NAMES = ["OPEN", "PEER_ENDED", "ENDING", "ENDING_AFTER_PEER", "FIN_SENT", "ENDED", "CLOSED"];
const STEPS: CloseStep[] = [END_CALLED, FIN_OUT, PEER_FIN, CLOSE];

function walk(steps: CloseStep[]): CloseState[] {
  const states: CloseState[] = [];
  let state: CloseState = OPEN;
  for (const step of steps) states.push(state = nextState(state, step));
  return states;
}

describe("close sequence", () => {
  it("reaches ENDED from both FINs in any order, and only after FIN follows end()", () => {
    assert.deepEqual(walk([END_CALLED, FIN_OUT, PEER_FIN]), [ENDING, FIN_SENT, ENDED], "our FIN first");
    assert.deepEqual(walk([PEER_FIN, END_CALLED, FIN_OUT]), [PEER_ENDED, ENDING_AFTER_PEER, ENDED], "the peer's first");
    assert.deepEqual(walk([END_CALLED, PEER_FIN, FIN_OUT]), [ENDING, ENDING_AFTER_PEER, ENDED], "the peer's while ours waits");
    assert.deepEqual(walk([FIN_OUT, PEER_FIN, FIN_OUT]), [OPEN, PEER_ENDED, PEER_ENDED], "no FIN goes out before end()");
  });

  it("ignores a second end() and a second FIN either way", () => {
    assert.equal(nextState(ENDING, END_CALLED), ENDING);
    assert.equal(nextState(FIN_SENT, END_CALLED), FIN_SENT);
    assert.equal(nextState(FIN_SENT, FIN_OUT), FIN_SENT);
    assert.equal(nextState(PEER_ENDED, PEER_FIN), PEER_ENDED);
    assert.equal(nextState(ENDED, PEER_FIN), ENDED);
  });

  it("closes from every state, and nothing moves it once closed", () => {
    for (const state of STATES) assert.equal(nextState(state, CLOSE), CLOSED, `close in ${NAMES[state]}`);
    for (const step of STEPS) assert.equal(nextState(CLOSED, step), CLOSED);
  });

  it("takes writes only up to PEER_ENDED, and never again once past it", () => {
    // The adapters' write() is a no-op when `state > PEER_ENDED`.
    assert.deepEqual(STATES.filter((state) => state <= PEER_ENDED), [OPEN, PEER_ENDED]);
    for (const state of STATES.filter((state) => state > PEER_ENDED)) {
      for (const step of STEPS) assert.ok(nextState(state, step) > PEER_ENDED, `${NAMES[state]}, step ${step}`);
    }
  });
});
