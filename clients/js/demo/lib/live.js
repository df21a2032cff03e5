// The live subscriptions whose every frame is a whole state: `ConversationRef.subscribe`,
// `subscribeParticipants`, `subscribeTyping` and `UserRef.subscribeOnline`, as in the TalkJS Data API
// (proto/PROTOCOL.md, "Conversation, participants, typing and online subscriptions"). The latest frame wins;
// nothing is replayed, so after a reconnect each subscribes again and its first frame is the state as it is then.
// Subscriptions to one thing in a session share one server subscription.
import { Lifecycle } from "./lifecycle.js";
import { NatterError, } from "./types.js";
const SUFFIX = {
    conversation: "Conversation",
    participants: "Participants",
    typing: "Typing",
    online: "Online",
    conversations: "Conversations",
};
/** What a `subscribeParticipants` or a `subscribeConversations` gets without a `limit`, and the most it may ask for. */
const DEFAULT_LIMIT = { participants: 10, conversations: 20 };
const MAX_LIMIT = { participants: 50, conversations: 30 };
/** The field naming what a subscription is about; the conversation list has none (its id is ""). */
function idField(kind) {
    if (kind === "conversations")
        return null;
    return kind === "online" ? "userId" : "conversationId";
}
function request(kind, type, id) {
    const field = idField(kind);
    return field === null ? { type } : { type, [field]: id };
}
/** @internal The session's map key of a live subscription. */
export function liveKey(kind, id) {
    return `${kind}\u0000${id}`;
}
/** @internal Says which live subscription a frame is for, if any. */
export function liveKeyOf(frame) {
    const kind = frame.type === "subscriptionError" ? frame.subscription : frame.type;
    if (kind !== "conversation" && kind !== "participants" && kind !== "typing" && kind !== "online" && kind !== "conversations") {
        return null;
    }
    const field = idField(kind);
    const id = field === null ? "" : frame[field];
    return typeof id === "string" ? liveKey(kind, id) : null;
}
/**
 * @internal Sends a subscribe; `fail` ends the subscription when the refusal is final. A subscribe lost with a
 * dropped connection is sent again on reconnect, and one racing a resubscription is already in place.
 */
export function requestSubscription(session, frame, fail) {
    session.connection.request(frame).catch((error) => {
        if (error.code === "CLOSED" && session.connectionState !== "closed")
            return;
        if (error.code === "ALREADY_SUBSCRIBED")
            return;
        fail(error);
    });
}
/** @internal The one server subscription behind every front of one thing. */
export class SharedLiveSubscription {
    session;
    kind;
    id;
    extra;
    fronts = new Set();
    latest = null;
    constructor(session, kind, id, 
    /** Fields every subscribe of this one carries (a conversation list's filter). */
    extra = {}) {
        this.session = session;
        this.kind = kind;
        this.id = id;
        this.extra = extra;
    }
    add(front) {
        this.fronts.add(front);
        if (this.latest !== null)
            front.receive(this.latest);
    }
    remove(front) {
        this.fronts.delete(front);
        if (this.fronts.size > 0)
            return;
        this.session.live.delete(liveKey(this.kind, this.id));
        this.session.connection.request(request(this.kind, `unsubscribe${SUFFIX[this.kind]}`, this.id)).catch(() => { });
    }
    /**
     * Subscribes on the server. After a reconnect a window that grew past its default asks for as many as it held;
     * one holding fewer was not full and takes the default again.
     */
    start() {
        const frame = { ...request(this.kind, `subscribe${SUFFIX[this.kind]}`, this.id), ...this.extra };
        const held = this.latest?.[this.kind];
        const [base, max] = [DEFAULT_LIMIT[this.kind], MAX_LIMIT[this.kind]];
        if (base !== undefined && max !== undefined && Array.isArray(held) && held.length > base) {
            frame.limit = Math.min(held.length, max);
        }
        requestSubscription(this.session, frame, (error) => this.fail(error));
    }
    /** @internal `loadMoreParticipants` or `loadMoreConversations`; the server coalesces concurrent calls. */
    async loadMore(count) {
        const frame = request(this.kind, `loadMore${SUFFIX[this.kind]}`, this.id);
        if (count !== undefined)
            frame.count = count;
        await this.session.connection.request(frame);
    }
    receive(frame) {
        if (frame.type === "subscriptionError") {
            this.fail(new NatterError(String(frame.errorCode), frame.reasons ?? []));
            return;
        }
        this.latest = frame;
        for (const front of this.fronts)
            front.receive(frame);
    }
    fail(error) {
        if (this.session.live.get(liveKey(this.kind, this.id)) === this)
            this.session.live.delete(liveKey(this.kind, this.id));
        for (const front of [...this.fronts])
            front.end({ type: "error", error });
        this.fronts.clear();
    }
}
/** A live view: `pending`, then `active` with each new state, until `unsubscribed` or `error`. */
export class LiveSubscription {
    shared;
    read;
    onSnapshot;
    lifecycle = new Lifecycle();
    /** Resolves with the first active state; rejects if the subscription ends first. */
    connected = this.lifecycle.connected;
    /** Resolves when the subscription ends (`unsubscribed` or `error`). */
    terminated = this.lifecycle.terminated;
    /** @internal */
    constructor(shared, read, onSnapshot) {
        this.shared = shared;
        this.read = read;
        this.onSnapshot = onSnapshot;
    }
    get state() {
        return this.lifecycle.current;
    }
    unsubscribe() {
        if (this.lifecycle.ended)
            return;
        this.end({ type: "unsubscribed" });
        this.shared?.remove(this);
    }
    /** @internal */
    receive(frame) {
        const state = this.read(frame);
        if (this.lifecycle.activate(state) !== null)
            this.onSnapshot?.(state.latestSnapshot);
    }
    /** @internal */
    end(state) {
        this.lifecycle.end(state, "state");
    }
    /** @internal */
    get sharedSubscription() {
        return this.shared;
    }
}
/** The user's conversations, most recent activity first; `loadedAll` once no older one is left. */
export class ConversationListSubscription extends LiveSubscription {
    /** Extends the list by `count` older conversations (default 20, at most 30); resolves once they are in it. */
    async loadMore(count) {
        const shared = this.sharedSubscription;
        if (shared === null)
            throw new Error("the subscription has ended");
        await shared.loadMore(count);
    }
}
/** The participants window: the most recently joined first, `loadedAll` once nobody earlier is left. */
export class ParticipantSubscription extends LiveSubscription {
    /** Extends the window by `count` earlier joiners (default 10, at most 50); resolves once they are in it. */
    async loadMore(count) {
        const shared = this.sharedSubscription;
        if (shared === null)
            throw new Error("the subscription has ended");
        await shared.loadMore(count);
    }
}
function frozen(value) {
    return value === null || value === undefined ? null : Object.freeze(value);
}
/** @internal How each kind reads its frames. */
export const readers = {
    conversation: (frame) => ({ type: "active", latestSnapshot: frozen(frame.conversation) }),
    participants: (frame) => ({
        type: "active",
        latestSnapshot: frozen(frame.participants),
        loadedAll: frame.loadedAll === true,
    }),
    typing: (frame) => ({ type: "active", latestSnapshot: frozen(frame.typing) }),
    online: (frame) => ({ type: "active", latestSnapshot: frozen(frame.online) }),
    conversations: (frame) => ({
        type: "active",
        latestSnapshot: frozen(frame.conversations),
        loadedAll: frame.loadedAll === true,
    }),
};
/** @internal Starts a front on the session's shared subscription of one thing (starting that if it is the first). */
export function subscribeLive(session, kind, id, makeFront, extra = {}) {
    const ended = session.endedWith;
    if (ended !== null) {
        const front = makeFront(null);
        front.end({ type: "error", error: ended });
        return front;
    }
    const key = liveKey(kind, id);
    let shared = session.live.get(key);
    const fresh = shared === undefined;
    if (shared === undefined) {
        shared = new SharedLiveSubscription(session, kind, id, extra);
        session.live.set(key, shared);
    }
    const front = makeFront(shared);
    shared.add(front);
    if (fresh)
        shared.start();
    return front;
}
