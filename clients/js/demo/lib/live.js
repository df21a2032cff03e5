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
};
/** The most a `subscribeParticipants` may ask for. */
const MAX_PARTICIPANTS_LIMIT = 50;
function idField(kind) {
    return kind === "online" ? "userId" : "conversationId";
}
/** @internal The session's map key of a live subscription. */
export function liveKey(kind, id) {
    return `${kind}\u0000${id}`;
}
/** @internal Says which live subscription a frame is for, if any. */
export function liveKeyOf(frame) {
    const kind = frame.type === "subscriptionError" ? frame.subscription : frame.type;
    if (kind !== "conversation" && kind !== "participants" && kind !== "typing" && kind !== "online")
        return null;
    const id = frame[idField(kind)];
    return typeof id === "string" ? liveKey(kind, id) : null;
}
/** @internal The one server subscription behind every front of one thing. */
export class SharedLiveSubscription {
    session;
    kind;
    id;
    fronts = new Set();
    latest = null;
    constructor(session, kind, id) {
        this.session = session;
        this.kind = kind;
        this.id = id;
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
        const frame = { type: `unsubscribe${SUFFIX[this.kind]}`, [idField(this.kind)]: this.id };
        this.session.connection.request(frame).catch(() => { });
    }
    /** Subscribes on the server; after a reconnect a participants window asks for as many as it held. */
    start() {
        const frame = { type: `subscribe${SUFFIX[this.kind]}`, [idField(this.kind)]: this.id };
        const held = this.latest?.participants;
        if (this.kind === "participants" && Array.isArray(held) && held.length > 0) {
            frame.limit = Math.min(held.length, MAX_PARTICIPANTS_LIMIT);
        }
        this.session.connection.request(frame).catch((error) => {
            if (error.code === "CLOSED" && this.session.connectionState !== "closed")
                return;
            if (error.code === "ALREADY_SUBSCRIBED")
                return;
            this.fail(error);
        });
    }
    /** @internal `loadMoreParticipants`; the server coalesces concurrent calls. */
    async loadMore(count) {
        const frame = { type: "loadMoreParticipants", conversationId: this.id };
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
};
/** @internal Starts a front on the session's shared subscription of one thing (starting that if it is the first). */
export function subscribeLive(session, kind, id, makeFront) {
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
        shared = new SharedLiveSubscription(session, kind, id);
        session.live.set(key, shared);
    }
    const front = makeFront(shared);
    shared.add(front);
    if (fresh)
        shared.start();
    return front;
}
