// The window and the hole rule without a gateway: a fake socket plays the server.

import assert from "node:assert/strict";
import { test } from "node:test";

import { getTalkSession } from "../dist/index.js";
import { Window } from "../dist/window.js";

const message = (id, seq, text = id) => ({
  id, seq, type: "SystemMessage", sender: null, content: [{ type: "text", children: [text] }], plaintext: text,
  custom: {}, createdAt: seq, editedAt: null, origin: "rest", referencedMessageId: null, referencedMessage: null, reactions: [],
});

test("after a snapshot only the next seq is next; a fresh snapshot keeps unchanged messages", () => {
  const window = new Window();
  assert.equal(window.place(9), "next", "nothing to compare with yet");
  window.reset(5, [message("b", 5), message("a", 4)], true);
  assert.equal(window.place(5), "duplicate");
  assert.equal(window.place(6), "next");
  assert.equal(window.place(7), "hole");
  window.observeSeq(6);
  assert.equal(window.place(7), "next");
  const before = window.messages;
  window.reset(8, [message("c", 8), message("b", 5), message("a", 4, "changed")], true);
  assert.equal(window.messages[1], before[0], "unchanged: the same object");
  assert.notEqual(window.messages[2], before[1], "changed: a new object");
  assert.deepEqual(window.resumePoint(), { fromSeq: 8, oldestSeq: 4, loadedAll: true });
  window.reset(9, null, true);
  assert.equal(window.place(12), "next", "a null window sees only what concerns its user");
  assert.equal(window.resumePoint(), null);
});

/** A socket whose server is the test: it records what the client sends and lets the test answer. */
class FakeSocket {
  static last = null;
  readyState = 0;
  sent = [];
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  constructor(url) {
    this.url = url;
    FakeSocket.last = this;
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  deliver(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  async next(type) {
    for (let i = 0; i < 200; i++) {
      const frame = this.sent.find((candidate) => candidate.type === type && !candidate.seen);
      if (frame !== undefined) {
        frame.seen = true;
        return frame;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`the client sent no ${type}: ${JSON.stringify(this.sent)}`);
  }
}

test("an event after a hole resubscribes from the last seq applied, and ignores the old stream meanwhile", async () => {
  const session = getTalkSession({ host: "ws://server.invalid", appId: "app", userId: "alice", token: "t", WebSocket: FakeSocket });
  const subscription = session.conversation("c").subscribeMessages();
  const socket = FakeSocket.last;
  const subscribe = await socket.next("subscribeMessages");
  assert.equal(subscribe.resume, undefined);
  socket.deliver({ type: "snapshot", conversationId: "c", seq: 5, messages: [message("m5", 5)], loadedAll: true });
  socket.deliver({ type: "ok", id: subscribe.id, result: {} });
  await subscription.connected;

  socket.deliver({ type: "event", conversationId: "c", seq: 7, event: { kind: "messageCreated", message: message("m7", 7) } });
  const unsubscribe = await socket.next("unsubscribe");
  socket.deliver({ type: "event", conversationId: "c", seq: 8, event: { kind: "messageCreated", message: message("m8", 8) } });
  socket.deliver({ type: "ok", id: unsubscribe.id, result: {} });
  const resubscribe = await socket.next("subscribeMessages");
  assert.deepEqual(resubscribe.resume, { fromSeq: 5, oldestSeq: 5, loadedAll: true });
  assert.deepEqual(subscription.state.latestSnapshot.map((m) => m.id), ["m5"], "nothing past the hole was applied");
  assert.equal(subscription.state.type, "active", "the subscription stays active meanwhile");

  socket.deliver({ type: "resumed", conversationId: "c", fromSeq: 5, seq: 8 });
  for (const seq of [6, 7, 8]) {
    socket.deliver({ type: "event", conversationId: "c", seq, event: { kind: "messageCreated", message: message(`m${seq}`, seq) } });
  }
  assert.deepEqual(subscription.state.latestSnapshot.map((m) => m.id), ["m8", "m7", "m6", "m5"]);
  session.close();
});
