// @natter/client against a real gateway over real sockets (Node 20: the `ws` package is the WebSocket).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";

import { getTalkSession, NatterError } from "../dist/index.js";
import { Gateway, texts, userToken, waitFor } from "./gateway.mjs";

let gateway;

before(async () => {
  gateway = await Gateway.start();
  await gateway.rest("PUT", "/users", {
    alice: { name: "Alice" },
    bob: { name: "Bob" },
    carol: { name: "Carol" },
  });
});

after(async () => {
  await gateway?.stop();
});

function session(user, extra = {}) {
  return getTalkSession({ host: gateway.host, appId: "jsapp", userId: user, token: userToken(user), WebSocket, ...extra });
}

let conversations = 0;
/** A fresh conversation of alice and bob, with `n` system messages m0..m(n-1). */
async function conversation(n = 0) {
  const id = `js_c${++conversations}`;
  await gateway.rest("PUT", `/conversations/${id}`, { participants: ["alice", "bob"] });
  for (let first = 0; first < n; first += 10) {
    const batch = [];
    for (let i = first; i < Math.min(n, first + 10); i++) batch.push({ type: "SystemMessage", text: `m${i}` });
    await gateway.rest("POST", `/conversations/${id}/messages`, batch);
  }
  return id;
}

test("a window starts with the 30 newest and loads more until it has them all", async () => {
  const id = await conversation(45);
  const alice = session("alice");
  const subscription = alice.conversation(id).subscribeMessages();
  assert.equal(subscription.state.type, "pending");
  const active = await subscription.connected;
  assert.equal(active.latestSnapshot.length, 30);
  assert.equal(active.latestSnapshot[0].plaintext, "m44", "newest first");
  assert.equal(active.loadedAll, false);
  await subscription.loadMore(10);
  assert.equal(subscription.state.latestSnapshot.length, 40);
  await Promise.all([subscription.loadMore(), subscription.loadMore(5)]);
  assert.equal(subscription.state.latestSnapshot.length, 45);
  assert.equal(subscription.state.loadedAll, true);
  assert.equal(subscription.state.latestSnapshot.at(-1).plaintext, "m0");
  subscription.unsubscribe();
  assert.equal(subscription.state.type, "unsubscribed");
  assert.deepEqual(await subscription.terminated, { type: "unsubscribed" });
  alice.close();
});

test("creates, edits, deletes and reactions from REST and from another session arrive live", async () => {
  const id = await conversation(1);
  const alice = session("alice");
  const bob = session("bob");
  const subscription = alice.conversation(id).subscribeMessages();
  await subscription.connected;

  const sent = await bob.conversation(id).send("hello from *bob*");
  let state = await waitFor(subscription, (s) => texts(s)[0] === "hello from bob");
  assert.equal(state.latestSnapshot[0].sender.name, "Bob");
  assert.deepEqual(state.latestSnapshot[0].content[0].children, ["hello from ", { type: "bold", children: ["bob"] }]);

  await gateway.rest("POST", `/conversations/${id}/messages`, [{ type: "SystemMessage", text: "from the backend" }]);
  await waitFor(subscription, (s) => texts(s)[0] === "from the backend");

  await sent.edit("edited by bob");
  await waitFor(subscription, (s) => texts(s).includes("edited by bob"));
  await sent.reaction("👍").add();
  state = await waitFor(subscription, (s) => s.latestSnapshot.find((m) => m.id === sent.id)?.reactions.length === 1);
  assert.deepEqual(state.latestSnapshot.find((m) => m.id === sent.id).reactions[0], { emoji: "👍", count: 1, currentUserReacted: false });
  await alice.conversation(id).message(sent.id).reaction("👍").add();
  state = await waitFor(subscription, (s) => s.latestSnapshot.find((m) => m.id === sent.id)?.reactions[0]?.count === 2);
  assert.equal(state.latestSnapshot.find((m) => m.id === sent.id).reactions[0].currentUserReacted, true);
  await sent.reaction("👍").remove();
  await waitFor(subscription, (s) => s.latestSnapshot.find((m) => m.id === sent.id)?.reactions[0]?.count === 1);

  const fetched = await bob.conversation(id).message(sent.id).get();
  assert.equal(fetched.plaintext, "edited by bob");
  assert.equal(await bob.conversation(id).message("msg_nope").get(), null);

  await sent.delete();
  await waitFor(subscription, (s) => !s.latestSnapshot.some((m) => m.id === sent.id));
  alice.close();
  bob.close();
});

test("snapshots are immutable and reused: only what changed is new", async () => {
  const id = await conversation(3);
  const alice = session("alice");
  const snapshots = [];
  const subscription = alice.conversation(id).subscribeMessages((snapshot) => snapshots.push(snapshot));
  const first = (await subscription.connected).latestSnapshot;
  assert.ok(Object.isFrozen(first) && Object.isFrozen(first[0]));
  await gateway.rest("POST", `/conversations/${id}/messages`, [{ type: "SystemMessage", text: "new" }]);
  const second = (await waitFor(subscription, (s) => s.latestSnapshot.length === 4)).latestSnapshot;
  assert.notEqual(second, first, "the array is new");
  assert.equal(second[1], first[0], "an unchanged message is the same object");
  assert.equal(second[3], first[2]);
  await alice.conversation(id).message(first[1].id).reaction("🎉").add();
  const third = (await waitFor(subscription, (s) => s.latestSnapshot[2].reactions.length === 1)).latestSnapshot;
  assert.notEqual(third[2], second[2], "the changed message is new");
  assert.equal(third[0], second[0]);
  assert.equal(third[3], second[3]);
  assert.equal(snapshots.at(-1), third, "onSnapshot got each new snapshot");
  alice.close();
});

test("two subscriptions of one conversation share one server subscription", async () => {
  const id = await conversation(2);
  const alice = session("alice");
  const one = alice.conversation(id).subscribeMessages();
  const two = alice.conversation(id).subscribeMessages();
  const [a, b] = await Promise.all([one.connected, two.connected]);
  assert.equal(a.latestSnapshot, b.latestSnapshot, "the same snapshot object");
  one.unsubscribe();
  await alice.conversation(id).send("still here");
  await waitFor(two, (s) => texts(s)[0] === "still here");
  alice.close();
});

test("a send with an idempotency key is stored once, and refusals are typed errors", async () => {
  const id = await conversation(0);
  const alice = session("alice");
  const subscription = alice.conversation(id).subscribeMessages();
  await subscription.connected;
  const [first, again] = await Promise.all([
    alice.conversation(id).send({ text: "once", idempotencyKey: "k1" }),
    alice.conversation(id).send({ text: "once", idempotencyKey: "k1" }),
  ]);
  assert.equal(first.id, again.id);
  const reply = await alice.conversation(id).send({ text: "a reply", referencedMessage: first });
  const state = await waitFor(subscription, (s) => texts(s)[0] === "a reply");
  assert.equal(texts(state).filter((text) => text === "once").length, 1);
  assert.equal(state.latestSnapshot[0].referencedMessage.id, first.id);
  await alice.conversation(id).markAsRead();
  assert.ok(reply.id.startsWith("msg_"));

  const carol = session("carol");
  await assert.rejects(carol.conversation(id).send("let me in"), (error) => {
    assert.ok(error instanceof NatterError);
    assert.equal(error.code, "NOT_A_PARTICIPANT");
    assert.ok(error.reasons.length > 0);
    return true;
  });
  const bob = session("bob");
  await assert.rejects(bob.conversation(id).message(first.id).edit("not mine"), { code: "UNAUTHORIZED_TO_EDIT" });
  bob.close();
  const outside = carol.conversation(id).subscribeMessages();
  assert.equal((await outside.connected).latestSnapshot, null, "a non-participant sees a null snapshot");
  await gateway.rest("PUT", `/conversations/${id}/participants/carol`, {});
  await waitFor(outside, (s) => s.latestSnapshot !== null && texts(s).includes("a reply"));
  alice.close();
  carol.close();
});

test("a token about to expire is replaced on the live socket", async () => {
  const id = await conversation(0);
  let fetched = 0;
  // Valid for 62 s: the client replaces it a minute before expiry, so within about two seconds.
  const tokenFetcher = async () => {
    fetched += 1;
    return userToken("alice", 62);
  };
  const alice = getTalkSession({ host: gateway.host, appId: "jsapp", userId: "alice", tokenFetcher, WebSocket });
  const subscription = alice.conversation(id).subscribeMessages();
  await subscription.connected;
  assert.equal(fetched, 1, "the first token comes from the fetcher");
  const deadline = Date.now() + 10_000;
  while (fetched < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(fetched >= 2, "fetched again before expiry");
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(alice.connectionState, "live", "the socket stayed up");
  await gateway.rest("POST", `/conversations/${id}/messages`, [{ type: "SystemMessage", text: "after the refresh" }]);
  await waitFor(subscription, (s) => texts(s)[0] === "after the refresh");
  alice.close();
});

test("after the gateway is killed and restarted, subscriptions reconnect and resume on their own", async () => {
  const id = await conversation(5);
  const alice = session("alice");
  const states = [];
  alice.onConnectionStateChange((state) => states.push(state));
  const subscription = alice.conversation(id).subscribeMessages();
  await subscription.connected;
  await gateway.kill();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(subscription.state.type, "active", "a transient disconnect does not change the state");
  gateway = await Gateway.start({ dataDir: gateway.dataDir, listen: gateway.addr });
  await gateway.rest("POST", `/conversations/${id}/messages`, [{ type: "SystemMessage", text: "while you were away" }]);
  const state = await waitFor(subscription, (s) => texts(s)[0] === "while you were away", 20_000);
  assert.deepEqual(texts(state).slice(0, 3), ["while you were away", "m4", "m3"], "resumed, nothing lost or doubled");
  assert.ok(states.includes("reconnecting") && states.at(-1) === "live", `states: ${states}`);
  alice.close();
});

test("a user subscription follows the user, from before they exist, with shared server subscriptions", async () => {
  const alice = session("alice");
  const seen = [];
  const first = alice.user("js_dave").subscribe((snapshot) => seen.push(snapshot));
  const second = alice.user("js_dave").subscribe();
  assert.deepEqual(await first.connected, { type: "active", latestSnapshot: null });
  assert.equal((await second.connected).latestSnapshot, null);
  await gateway.rest("PUT", "/users/js_dave", { name: "Dave", email: ["dave@example.com"], custom: { team: "red" } });
  let state = await waitFor(first, (s) => s.latestSnapshot?.name === "Dave");
  assert.deepEqual(state.latestSnapshot, {
    id: "js_dave", name: "Dave", custom: { team: "red" }, photoUrl: null, role: "default", locale: null, welcomeMessage: null,
  });
  assert.ok(Object.isFrozen(state.latestSnapshot));
  await waitFor(second, (s) => s.latestSnapshot?.name === "Dave");
  second.unsubscribe();
  assert.equal(second.state.type, "unsubscribed");
  await gateway.rest("PUT", "/users/js_dave", { name: "David" });
  state = await waitFor(first, (s) => s.latestSnapshot?.name === "David");
  assert.deepEqual(seen.map((snapshot) => snapshot?.name ?? null), [null, "Dave", "David"]);
  first.unsubscribe();
  assert.deepEqual(await first.terminated, { type: "unsubscribed" });
  alice.close();
});

test("conversation, participants, typing and online subscriptions follow the Data API", async () => {
  const id = await conversation();
  const alice = session("alice");
  const bob = session("bob");

  // The conversation as alice sees it: bob's message is her unread last message, until she reads it.
  const seen = [];
  const subscription = alice.conversation(id).subscribe((snapshot) => seen.push(snapshot));
  const first = await subscription.connected;
  assert.equal(first.latestSnapshot.id, id);
  assert.equal(first.latestSnapshot.lastMessage, null);
  await bob.conversation(id).send("hello alice");
  let state = await waitFor(subscription, (s) => s.latestSnapshot?.unreadMessageCount === 1);
  assert.equal(state.latestSnapshot.lastMessage.plaintext, "hello alice");
  assert.ok(Object.isFrozen(state.latestSnapshot));
  await alice.conversation(id).markAsRead();
  state = await waitFor(subscription, (s) => s.latestSnapshot?.unreadMessageCount === 0);
  assert.equal(state.latestSnapshot.readUntil, state.latestSnapshot.lastMessage.createdAt);
  assert.ok(seen.length >= 3);

  // Participants, most recently joined first.
  const participants = alice.conversation(id).subscribeParticipants();
  state = await participants.connected;
  assert.deepEqual(new Set(state.latestSnapshot.map((p) => p.user.id)), new Set(["alice", "bob"]));
  assert.equal(state.loadedAll, true);
  await participants.loadMore(5);
  await gateway.rest("PUT", `/conversations/${id}/participants/carol`, {});
  state = await waitFor(participants, (s) => s.latestSnapshot?.length === 3);
  assert.equal(state.latestSnapshot[0].user.id, "carol");

  // Typing: bob types, then sends, which ends it.
  const typing = alice.conversation(id).subscribeTyping();
  assert.deepEqual((await typing.connected).latestSnapshot, { many: false, users: [] });
  await bob.conversation(id).markAsTyping();
  state = await waitFor(typing, (s) => s.latestSnapshot?.users?.length === 1);
  assert.equal(state.latestSnapshot.users[0].name, "Bob");
  await bob.conversation(id).send("done typing");
  await waitFor(typing, (s) => s.latestSnapshot?.users?.length === 0);

  // Online: carol holds no session; once she subscribes to something she is connected, and not once she leaves.
  const online = alice.user("carol").subscribeOnline();
  assert.equal((await online.connected).latestSnapshot.isConnected, false);
  const carol = session("carol");
  const held = carol.user("carol").subscribe();
  await held.connected;
  await waitFor(online, (s) => s.latestSnapshot?.isConnected === true);
  carol.close();
  await waitFor(online, (s) => s.latestSnapshot?.isConnected === false);
  assert.equal((await alice.user("js_nobody").subscribeOnline().connected).latestSnapshot, null);

  for (const live of [subscription, participants, typing, online]) live.unsubscribe();
  assert.deepEqual(await typing.terminated, { type: "unsubscribed" });
  alice.close();
  bob.close();
});

test("the conversation list moves a conversation with new activity to the front", async () => {
  const [older, newer] = [await conversation(), await conversation()];
  const bob = session("bob");
  const list = bob.subscribeConversations({ filter: { hasMessages: false } });
  let state = await list.connected;
  const ids = state.latestSnapshot.map((c) => c.id);
  assert.ok(ids.indexOf(newer) < ids.indexOf(older), `${ids}`);
  assert.ok(Object.isFrozen(state.latestSnapshot));
  // A message gives `older` one: it no longer matches the filter and drops out.
  await gateway.rest("POST", `/conversations/${older}/messages`, [{ type: "SystemMessage", text: "now it has one" }]);
  await waitFor(list, (s) => !s.latestSnapshot.some((c) => c.id === older));
  list.unsubscribe();
  const all = bob.subscribeConversations();
  state = await waitFor(all, (s) => s.type === "active" && s.latestSnapshot[0]?.id === older);
  assert.equal(state.latestSnapshot[0].lastMessage.plaintext, "now it has one");
  await all.loadMore(30);
  all.unsubscribe();
  bob.close();
});

test("live subscriptions subscribe again after the gateway restarts, and show the state as it is then", async () => {
  const id = await conversation();
  const alice = session("alice");
  const subscription = alice.conversation(id).subscribe();
  const list = alice.subscribeConversations();
  await Promise.all([subscription.connected, list.connected]);
  await gateway.kill();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(subscription.state.type, "active", "a transient disconnect does not change the state");
  gateway = await Gateway.start({ dataDir: gateway.dataDir, listen: gateway.addr });
  await gateway.rest("POST", `/conversations/${id}/messages`, [{ type: "SystemMessage", text: "after the restart" }]);
  await waitFor(subscription, (s) => s.latestSnapshot?.lastMessage?.plaintext === "after the restart", 20_000);
  await waitFor(list, (s) => s.latestSnapshot?.[0]?.lastMessage?.plaintext === "after the restart", 20_000);
  alice.close();
});

test("a filtered conversation list keeps its filter and its default size after the gateway restarts", async () => {
  const support = async () => {
    const id = await conversation();
    await gateway.rest("PUT", `/conversations/${id}`, { custom: { kind: "support" } });
    return id;
  };
  const [first, second] = [await support(), await support()];
  const carol = session("carol");
  await gateway.rest("PUT", `/conversations/${first}/participants/carol`, {});
  await gateway.rest("PUT", `/conversations/${second}/participants/carol`, {});
  const list = carol.subscribeConversations({ filter: { custom: { kind: ["==", "support"] } } });
  const ids = (state) => (state.latestSnapshot ?? []).map((c) => c.id);
  assert.deepEqual(ids(await list.connected), [second, first]);
  await gateway.kill();
  gateway = await Gateway.start({ dataDir: gateway.dataDir, listen: gateway.addr });
  // Joined in this order after the restart: an unfiltered list would show `other` before `first`.
  const other = await conversation();
  await gateway.rest("PUT", `/conversations/${other}/participants/carol`, {});
  const third = await support();
  await gateway.rest("PUT", `/conversations/${third}/participants/carol`, {});
  const state = await waitFor(list, (s) => ids(s)[0] === third, 20_000);
  assert.deepEqual(ids(state), [third, second, first], "filtered, and not cut to the two it held");
  carol.close();
});
