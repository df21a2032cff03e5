// The Data API surface: a session, references to conversations and messages, and message subscriptions.
// Subscriptions to one conversation share one server subscription; all share one socket.
import { Connection } from "./connection.js";
import { NatterError, } from "./types.js";
import { Lifecycle } from "./lifecycle.js";
import { UserRef } from "./user.js";
import { ConversationListSubscription, LiveSubscription, ParticipantSubscription, liveKeyOf, readers, subscribeLive, } from "./live.js";
import { Window } from "./window.js";
/** The default first window, as the TalkJS Data API's. */
const FIRST_WINDOW = 30;
/** `MessageRef.get` looks this far back for a message no subscription holds. */
const GET_SEARCH_LIMIT = 500;
/** Opens a session for one user: one socket, reconnecting on its own. */
export function getTalkSession(options) {
    return new TalkSession(options);
}
export class TalkSession {
    userId;
    appId;
    /** @internal */ connection;
    shared = new Map();
    /** @internal One server subscription per user, shared by every `UserSubscription` of them. */
    users = new Map();
    /** @internal One server subscription per conversation, participants, typing or online of one thing. */
    live = new Map();
    terminated = null;
    constructor(options) {
        this.userId = options.userId;
        this.appId = options.appId;
        this.connection = new Connection(options);
        this.connection.onFrame = (frame) => {
            if (frame.type === "user" && typeof frame.userId === "string") {
                this.users.get(frame.userId)?.receive(frame);
                return;
            }
            const live = liveKeyOf(frame);
            if (live !== null) {
                this.live.get(live)?.receive(frame);
                return;
            }
            const conversationId = typeof frame.conversationId === "string" ? frame.conversationId : null;
            if (conversationId !== null)
                this.shared.get(conversationId)?.receive(frame);
        };
        this.connection.onReconnected = () => {
            for (const subscription of this.shared.values())
                subscription.start();
            for (const subscription of this.users.values())
                subscription.start();
            for (const subscription of this.live.values())
                subscription.start();
        };
        this.connection.onTerminated = (error) => {
            this.terminated = error;
            for (const subscription of [...this.shared.values()])
                subscription.fail(error);
            for (const subscription of [...this.users.values()])
                subscription.fail(error);
            for (const subscription of [...this.live.values()])
                subscription.fail(error);
        };
    }
    /** `connecting`, `live`, `reconnecting`, or `closed` (for good). */
    get connectionState() {
        return this.connection.state;
    }
    onConnectionStateChange(listener) {
        return this.connection.onStateChange(listener);
    }
    conversation(id) {
        return new ConversationRef(this, id);
    }
    user(id) {
        return new UserRef(this, id);
    }
    /**
     * Subscribes to the user's 20 most recently active conversations (`loadMore` reaches older ones), optionally
     * filtered with the conversation filter of `GET /users/{id}/conversations`. One list per session: a second
     * call shares the first's server subscription (and its filter).
     */
    subscribeConversations(options = {}, onSnapshot) {
        const extra = options.filter === undefined ? {} : { filter: options.filter };
        return subscribeLive(this, "conversations", "", (shared) => new ConversationListSubscription(shared, readers.conversations, onSnapshot), extra);
    }
    /** @internal Why the session ended for good, if it has. */
    get endedWith() {
        return this.terminated;
    }
    /** Ends the session: every subscription ends in `error` with code `CLOSED`. */
    close() {
        this.connection.close();
    }
    /** @internal */
    subscribe(conversationId, front) {
        if (this.terminated !== null) {
            front.end({ type: "error", error: this.terminated });
            return;
        }
        let shared = this.shared.get(conversationId);
        if (shared === undefined) {
            shared = new SharedSubscription(this, conversationId);
            this.shared.set(conversationId, shared);
            shared.add(front);
            shared.start();
        }
        else {
            shared.add(front);
        }
    }
    /** @internal */
    release(conversationId, front) {
        const shared = this.shared.get(conversationId);
        if (shared !== undefined && shared.remove(front)) {
            this.shared.delete(conversationId);
            this.connection.request({ type: "unsubscribe", conversationId }).catch(() => { });
        }
    }
    /** @internal */
    forget(conversationId) {
        this.shared.delete(conversationId);
    }
    /** @internal A message from any live window of its conversation. */
    fromWindow(conversationId, messageId) {
        return this.shared.get(conversationId)?.window.messages?.find((message) => message.id === messageId);
    }
    /** @internal */
    has(conversationId) {
        return this.shared.has(conversationId);
    }
}
/** The one server subscription behind every `MessageSubscription` of a conversation in a session. */
class SharedSubscription {
    session;
    conversationId;
    window = new Window();
    fronts = new Set();
    active = false;
    /** Waiting for the answer to a resubscription: the old subscription's events are ignored meanwhile. */
    resyncing = false;
    constructor(session, conversationId) {
        this.session = session;
        this.conversationId = conversationId;
    }
    add(front) {
        this.fronts.add(front);
        if (this.active)
            front.update(this.state());
    }
    /** Returns true when the last front left. */
    remove(front) {
        this.fronts.delete(front);
        return this.fronts.size === 0;
    }
    state() {
        return { type: "active", latestSnapshot: this.window.messages, loadedAll: this.window.loadedAll };
    }
    /** Subscribes on the server: fresh, or resuming where the window stands. */
    start() {
        const resume = this.window.resumePoint();
        const frame = { type: "subscribeMessages", conversationId: this.conversationId, limit: FIRST_WINDOW };
        if (resume !== null)
            frame.resume = resume;
        this.session.connection.request(frame).catch((error) => {
            // A resubscription races the reconnect or the resync that asked for it; those errors are not final.
            if (error.code === "CLOSED" && this.session.connectionState !== "closed")
                return;
            if (error.code === "UNSUBSCRIBED" || error.code === "ALREADY_SUBSCRIBED")
                return;
            this.fail(error);
        });
    }
    receive(frame) {
        switch (frame.type) {
            case "snapshot":
                this.resyncing = false;
                this.window.reset(Number(frame.seq), frame.messages ?? null, frame.loadedAll === true);
                this.publish();
                return;
            case "resumed":
                this.resyncing = false;
                this.publish();
                return;
            case "page":
                this.window.appendPage(Number(frame.seq), frame.messages ?? [], frame.loadedAll === true);
                this.publish();
                return;
            case "event": {
                if (this.resyncing)
                    return;
                const seq = Number(frame.seq);
                const place = this.window.place(seq);
                if (place === "duplicate")
                    return;
                if (place === "hole") {
                    this.resync();
                    return;
                }
                this.window.observeSeq(seq);
                if (this.window.applyEvent(seq, frame.event, this.session.userId))
                    this.publish();
                return;
            }
            case "subscriptionError":
                this.fail(new NatterError(String(frame.errorCode), frame.reasons ?? []));
                return;
            default:
                return;
        }
    }
    /** Events are missing: subscribe again from the last one applied (proto/PROTOCOL.md, "No hole"). */
    resync() {
        this.resyncing = true;
        const conversationId = this.conversationId;
        this.session.connection
            .request({ type: "unsubscribe", conversationId })
            .then(() => this.start())
            .catch(() => { });
    }
    publish() {
        this.active = true;
        const state = this.state();
        for (const front of this.fronts)
            front.update(state);
    }
    fail(error) {
        this.session.forget(this.conversationId);
        for (const front of [...this.fronts])
            front.end({ type: "error", error });
        this.fronts.clear();
    }
}
/** Copies the fields of `params` that are given (not `undefined`) into the frame. */
function copyGiven(frame, params, keys) {
    for (const key of keys) {
        if (params[key] !== undefined)
            frame[key] = params[key];
    }
}
export class ConversationRef {
    session;
    id;
    constructor(session, id) {
        this.session = session;
        this.id = id;
    }
    /**
     * Subscribes to the newest messages and every change to them. `onSnapshot` is called with each new snapshot
     * (`null` while the user does not take part) and whether the whole history is loaded.
     */
    subscribeMessages(onSnapshot) {
        const subscription = new MessageSubscription(this.session, this.id, onSnapshot);
        this.session.subscribe(this.id, subscription);
        return subscription;
    }
    /** Sends a message as the session's user; resolves once it is committed. */
    async send(params) {
        const frame = { type: "sendMessage", conversationId: this.id };
        if (typeof params === "string") {
            frame.text = params;
        }
        else {
            copyGiven(frame, params, ["text", "content", "custom", "idempotencyKey"]);
            if (params.referencedMessage !== undefined) {
                frame.referencedMessageId =
                    typeof params.referencedMessage === "string" ? params.referencedMessage : params.referencedMessage.id;
            }
        }
        const result = await this.session.connection.request(frame);
        return new MessageRef(this.session, this.id, String(result.messageId));
    }
    /** Subscribes to the conversation as the session's user sees it (`null` while they do not take part). */
    subscribe(onSnapshot) {
        return subscribeLive(this.session, "conversation", this.id, (shared) => new LiveSubscription(shared, readers.conversation, onSnapshot));
    }
    /** Subscribes to the 10 most recently joined participants; `loadMore` reaches earlier joiners. */
    subscribeParticipants(onSnapshot) {
        return subscribeLive(this.session, "participants", this.id, (shared) => new ParticipantSubscription(shared, readers.participants, onSnapshot));
    }
    /** Subscribes to who else types in the conversation (`null` while the user does not take part). */
    subscribeTyping(onSnapshot) {
        return subscribeLive(this.session, "typing", this.id, (shared) => new LiveSubscription(shared, readers.typing, onSnapshot));
    }
    /** Marks the session's user as typing here for 10 seconds; call again (every few seconds) to extend. */
    async markAsTyping() {
        await this.session.connection.request({ type: "markAsTyping", conversationId: this.id });
    }
    /** Marks the conversation and all its messages read for the session's user. */
    async markAsRead() {
        await this.session.connection.request({ type: "markAsRead", conversationId: this.id });
    }
    message(id) {
        return new MessageRef(this.session, this.id, id);
    }
}
export class MessageRef {
    session;
    conversationId;
    id;
    constructor(session, conversationId, id) {
        this.session = session;
        this.conversationId = conversationId;
        this.id = id;
    }
    /**
     * A snapshot of the message, or `null` if it does not exist (or is further back than 500 messages): from a
     * window this session holds, or else a short-lived subscription.
     */
    async get() {
        const held = this.session.fromWindow(this.conversationId, this.id);
        if (held !== undefined)
            return held;
        const subscription = this.session.conversation(this.conversationId).subscribeMessages();
        try {
            let state = await subscription.connected;
            for (;;) {
                const found = state.latestSnapshot?.find((message) => message.id === this.id);
                if (found !== undefined)
                    return found;
                if (state.latestSnapshot === null || state.loadedAll || state.latestSnapshot.length >= GET_SEARCH_LIMIT) {
                    return null;
                }
                await subscription.loadMore(100);
                const next = subscription.state;
                if (next.type !== "active")
                    return null;
                state = next;
            }
        }
        finally {
            subscription.unsubscribe();
        }
    }
    async edit(params) {
        const frame = { type: "editMessage", conversationId: this.conversationId, messageId: this.id };
        if (typeof params === "string")
            frame.text = params;
        else
            copyGiven(frame, params, ["text", "content", "custom"]);
        await this.session.connection.request(frame);
    }
    async delete() {
        await this.session.connection.request({ type: "deleteMessage", conversationId: this.conversationId, messageId: this.id });
    }
    reaction(emoji) {
        return new ReactionRef(this.session, this.conversationId, this.id, emoji);
    }
}
export class ReactionRef {
    session;
    conversationId;
    messageId;
    emoji;
    constructor(session, conversationId, messageId, emoji) {
        this.session = session;
        this.conversationId = conversationId;
        this.messageId = messageId;
        this.emoji = emoji;
    }
    async add() {
        await this.change("addReaction");
    }
    async remove() {
        await this.change("removeReaction");
    }
    async change(type) {
        const { conversationId, messageId, emoji } = this;
        await this.session.connection.request({ type, conversationId, messageId, emoji });
    }
}
/** One view of a conversation's messages: `pending`, then `active`, until `unsubscribed` or `error`. */
export class MessageSubscription {
    session;
    conversationId;
    onSnapshot;
    lifecycle = new Lifecycle();
    /** Resolves with the first active state; rejects if the subscription ends first. */
    connected = this.lifecycle.connected;
    /** Resolves when the subscription ends (`unsubscribed` or `error`). */
    terminated = this.lifecycle.terminated;
    constructor(session, conversationId, onSnapshot) {
        this.session = session;
        this.conversationId = conversationId;
        this.onSnapshot = onSnapshot;
    }
    get state() {
        return this.lifecycle.current;
    }
    /**
     * Extends the window `count` messages (1 to 100, default 30) into the past; resolves when they are in
     * `state`. Concurrent calls coalesce on the server.
     */
    async loadMore(count) {
        const current = this.lifecycle.current;
        if (current.type !== "active")
            throw new NatterError("SUBSCRIPTION_NOT_ACTIVE", [`the subscription is ${current.type}`]);
        const frame = { type: "loadMore", conversationId: this.conversationId };
        if (count !== undefined)
            frame.count = count;
        await this.session.connection.request(frame);
    }
    unsubscribe() {
        if (this.lifecycle.ended)
            return;
        this.end({ type: "unsubscribed" });
        this.session.release(this.conversationId, this);
    }
    /** @internal */
    update(state) {
        const previous = this.lifecycle.activate(state);
        if (previous === null)
            return;
        const changed = previous.type !== "active" || previous.latestSnapshot !== state.latestSnapshot || previous.loadedAll !== state.loadedAll;
        if (changed)
            this.onSnapshot?.(state.latestSnapshot, state.loadedAll);
    }
    /** @internal */
    end(state) {
        this.lifecycle.end(state, "snapshot");
    }
}
