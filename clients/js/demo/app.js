// The Natter demo: a small chat UI on @natter/client (served with it by `natter --demo`).

import { getTalkSession } from "./lib/index.js";

const $ = (id) => document.getElementById(id);
const QUICK_REACTIONS = ["👍", "❤️", "😂"];

let session = null;
let me = null;
let names = new Map();
let open = null; // { id, subscription, loadedAll, loading }
let replyTo = null;
let editing = null;
/** Rendered list items, by message snapshot: snapshots are reused while unchanged, so are their elements. */
let rendered = new WeakMap();

async function login(user) {
  const start = await (await fetch(`session?user=${encodeURIComponent(user)}`)).json();
  me = start.userId;
  names = new Map(start.users.map((u) => [u.id, u.name]));
  session = getTalkSession({
    host: location.origin,
    appId: start.appId,
    userId: me,
    tokenFetcher: async () => (await (await fetch(`session?user=${encodeURIComponent(me)}`)).json()).token,
  });
  session.onConnectionStateChange(showConnection);
  showConnection(session.connectionState);
  $("me").textContent = `as ${names.get(me)}`;
  $("login").hidden = true;
  $("chat").hidden = false;
  await refreshConversations();
  setInterval(refreshConversations, 3000);
}

function showConnection(state) {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = state;
}

async function refreshConversations() {
  let list;
  try {
    list = await (await fetch(`conversations?user=${encodeURIComponent(me)}`)).json();
  } catch {
    return; // The gateway is away; the connection badge says so.
  }
  if (!Array.isArray(list)) return;
  const nav = $("conversations");
  nav.replaceChildren(
    ...list.map((conversation) => {
      const button = document.createElement("button");
      button.dataset.id = conversation.id;
      button.className = [conversation.id === open?.id ? "open" : "", conversation.isUnread && conversation.id !== open?.id ? "unread" : ""].join(" ");
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = conversation.subject ?? conversation.id;
      button.append(title);
      if (conversation.unreadMessageCount > 0 && conversation.id !== open?.id) {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = String(conversation.unreadMessageCount);
        button.append(badge);
      }
      const preview = document.createElement("span");
      preview.className = "preview";
      preview.textContent = conversation.lastMessage ?? "";
      button.append(preview);
      button.onclick = () => openConversation(conversation.id, conversation.subject);
      return button;
    }),
  );
  if (open === null && list.length > 0) openConversation(list[0].id, list[0].subject);
}

function openConversation(id, subject) {
  if (open?.id === id) return;
  open?.subscription.unsubscribe();
  rendered = new WeakMap();
  $("list").replaceChildren();
  $("subject").textContent = subject ?? id;
  cancelReply();
  const conversation = session.conversation(id);
  const state = { id, subscription: null, loadedAll: false, loading: false };
  open = state;
  state.subscription = conversation.subscribeMessages((messages, loadedAll) => {
    if (open !== state) return;
    state.loadedAll = loadedAll;
    render(messages ?? [], loadedAll);
    conversation.markAsRead().catch(() => {});
  });
  refreshConversations();
}

function render(messages, loadedAll) {
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  const items = [...messages].reverse().map((message) => {
    let item = rendered.get(message);
    if (item === undefined) {
      item = renderMessage(message);
      rendered.set(message, item);
    }
    return item;
  });
  $("list").replaceChildren(...items);
  $("history-state").textContent = loadedAll ? "This is the beginning of the conversation." : "Scroll up for older messages";
  // New messages keep a reader at the bottom there; older ones loaded above keep what they were reading in place.
  box.scrollTop = atBottom ? box.scrollHeight : box.scrollHeight - fromBottom;
  if (!loadedAll && box.scrollHeight <= box.clientHeight) loadOlder();
}

function renderMessage(message) {
  const item = document.createElement("li");
  item.dataset.id = message.id;
  const mine = message.sender?.id === me;
  item.className = `message ${message.type === "SystemMessage" ? "system" : ""} ${mine ? "mine" : ""}`;
  if (message.sender !== null) {
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = message.sender.name;
    item.append(who);
  }
  if (message.referencedMessage !== null) {
    const quote = document.createElement("div");
    quote.className = "quote";
    quote.textContent = `${message.referencedMessage.sender?.name ?? "System"}: ${message.referencedMessage.plaintext}`;
    item.append(quote);
  }
  const body = document.createElement("div");
  body.className = "text";
  for (const block of message.content) body.append(...renderBlock(block));
  item.append(body);
  if (message.editedAt !== null) {
    const edited = document.createElement("span");
    edited.className = "edited";
    edited.textContent = " (edited)";
    body.append(edited);
  }
  const reactions = document.createElement("div");
  reactions.className = "reactions";
  for (const reaction of message.reactions) {
    reactions.append(button(`${reaction.emoji} ${reaction.count}`, () => toggle(message, reaction.emoji), reaction.currentUserReacted ? "mine" : ""));
  }
  item.append(reactions);
  if (message.type === "UserMessage") {
    const actions = document.createElement("div");
    actions.className = "actions";
    for (const emoji of QUICK_REACTIONS) {
      if (!message.reactions.some((reaction) => reaction.emoji === emoji)) actions.append(button(emoji, () => toggle(message, emoji), "react"));
    }
    actions.append(button("reply", () => startReply(message), "reply"));
    if (mine) {
      actions.append(button("edit", () => startEdit(message), "edit"));
      actions.append(button("delete", () => session.conversation(open.id).message(message.id).delete(), "delete"));
    }
    item.append(actions);
  }
  return item;
}

function button(label, onclick, className) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.className = className;
  element.onclick = () => Promise.resolve(onclick()).catch(showError);
  return element;
}

function renderBlock(block) {
  if (block.type === "text") return block.children.map(renderNode);
  if (block.type === "file") {
    const link = document.createElement("a");
    link.href = block.url;
    link.textContent = `📎 ${block.filename}`;
    return [link];
  }
  return [document.createTextNode(`📍 ${block.latitude}, ${block.longitude}`)];
}

function renderNode(node) {
  if (typeof node === "string") return document.createTextNode(node);
  const tags = { bold: "strong", italic: "em", strikethrough: "s", bulletList: "ul", bulletPoint: "li", codeSpan: "code" };
  if (node.type === "codeSpan" || node.type === "customEmoji" || node.type === "mention") {
    const element = document.createElement(tags[node.type] ?? "span");
    element.textContent = node.type === "mention" ? `@${node.text}` : node.text;
    return element;
  }
  if (node.type === "autoLink" || node.type === "link") {
    const link = document.createElement("a");
    link.href = node.url;
    link.rel = "noopener";
    link.target = "_blank";
    if (node.type === "autoLink") link.textContent = node.text;
    else link.append(...node.children.map(renderNode));
    return link;
  }
  const element = document.createElement(tags[node.type] ?? "span");
  element.append(...(node.children ?? []).map(renderNode));
  return element;
}

async function toggle(message, emoji) {
  const reaction = session.conversation(open.id).message(message.id).reaction(emoji);
  const reacted = message.reactions.some((r) => r.emoji === emoji && r.currentUserReacted);
  await (reacted ? reaction.remove() : reaction.add());
}

function startReply(message) {
  editing = null;
  replyTo = message;
  $("replying").hidden = false;
  $("replying-to").textContent = message.plaintext;
  $("text").focus();
}

function startEdit(message) {
  cancelReply();
  editing = message;
  $("text").value = message.plaintext;
  $("send").textContent = "Save";
  $("text").focus();
}

function cancelReply() {
  replyTo = null;
  editing = null;
  $("replying").hidden = true;
  $("send").textContent = "Send";
}

async function loadOlder() {
  if (open === null || open.loading || open.loadedAll || open.subscription.state.type !== "active") return;
  open.loading = true;
  $("history-state").textContent = "Loading older messages…";
  try {
    await open.subscription.loadMore(20);
  } finally {
    open.loading = false;
  }
}

function showError(error) {
  // A refused action is shown, not thrown: the page goes on.
  $("history-state").textContent = `Not done: ${error.code ?? error.message}`;
}

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 40) loadOlder().catch(showError);
});
$("cancel-reply").onclick = cancelReply;
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text === "" || open === null) return;
  const conversation = session.conversation(open.id);
  const action = editing !== null
    ? conversation.message(editing.id).edit(text)
    : conversation.send(replyTo !== null ? { text, referencedMessage: replyTo.id } : text);
  $("text").value = "";
  cancelReply();
  action.catch(showError);
});

const users = [
  ["alice", "Alice"],
  ["bob", "Bob"],
  ["carol", "Carol"],
];
$("users").replaceChildren(...users.map(([id, name]) => button(name, () => login(id), `user-${id}`)));
const chosen = location.hash.slice(1);
if (users.some(([id]) => id === chosen)) login(chosen).catch(showError);
