// User subscriptions: `session.user(id).subscribe()`, the TalkJS Data API's `UserRef.subscribe`. Every `user` frame
// carries the user's whole state and the `seq` of the user's stream; the highest `seq` wins (proto/PROTOCOL.md,
// "User subscriptions"). Subscriptions to one user in a session share one server subscription.
import { Lifecycle } from "./lifecycle.js";
import { LiveSubscription, readers, requestSubscription, subscribeLive } from "./live.js";
export class UserRef {
    session;
    id;
    constructor(session, id) {
        this.session = session;
        this.id = id;
    }
    /** Subscribes to the user's public fields; `onSnapshot` is called with each new state. */
    subscribe(onSnapshot) {
        const front = new UserSubscription(this.session, this.id, onSnapshot);
        const ended = this.session.endedWith;
        if (ended !== null) {
            front.end({ type: "error", error: ended });
            return front;
        }
        let shared = this.session.users.get(this.id);
        if (shared === undefined) {
            shared = new SharedUserSubscription(this.session, this.id);
            this.session.users.set(this.id, shared);
            shared.add(front);
            shared.start();
        }
        else {
            shared.add(front);
        }
        return front;
    }
    /** Subscribes to whether the user is connected (`null` while they do not exist). */
    subscribeOnline(onSnapshot) {
        return subscribeLive(this.session, "online", this.id, (shared) => new LiveSubscription(shared, readers.online, onSnapshot));
    }
}
/** @internal The one server subscription behind every `UserSubscription` of a user in a session. */
export class SharedUserSubscription {
    session;
    userId;
    fronts = new Set();
    seq = -1;
    snapshot = null;
    active = false;
    constructor(session, userId) {
        this.session = session;
        this.userId = userId;
    }
    add(front) {
        this.fronts.add(front);
        if (this.active)
            front.update({ type: "active", latestSnapshot: this.snapshot });
    }
    /** Says whether that was the last one. */
    remove(front) {
        this.fronts.delete(front);
        if (this.fronts.size > 0)
            return false;
        this.session.users.delete(this.userId);
        this.session.connection.request({ type: "unsubscribeUser", userId: this.userId }).catch(() => { });
        return true;
    }
    /** Subscribes on the server (again after a reconnect: the first frame is the state as it is then). */
    start() {
        requestSubscription(this.session, { type: "subscribeUser", userId: this.userId }, (error) => this.fail(error));
    }
    receive(frame) {
        const seq = Number(frame.seq);
        if (!(seq > this.seq))
            return;
        this.seq = seq;
        this.snapshot = frame.user === null ? null : Object.freeze({ ...frame.user });
        this.active = true;
        for (const front of this.fronts)
            front.update({ type: "active", latestSnapshot: this.snapshot });
    }
    fail(error) {
        this.session.users.delete(this.userId);
        for (const front of [...this.fronts])
            front.end({ type: "error", error });
        this.fronts.clear();
    }
}
/** A live view of one user: `pending`, then `active`, until `unsubscribed` or `error`. */
export class UserSubscription {
    session;
    userId;
    onSnapshot;
    lifecycle = new Lifecycle();
    /** Resolves with the first active state; rejects if the subscription ends first. */
    connected = this.lifecycle.connected;
    /** Resolves when the subscription ends (`unsubscribed` or `error`). */
    terminated = this.lifecycle.terminated;
    constructor(session, userId, onSnapshot) {
        this.session = session;
        this.userId = userId;
        this.onSnapshot = onSnapshot;
    }
    get state() {
        return this.lifecycle.current;
    }
    unsubscribe() {
        if (this.lifecycle.ended)
            return;
        this.end({ type: "unsubscribed" });
        this.session.users.get(this.userId)?.remove(this);
    }
    /** @internal */
    update(state) {
        const previous = this.lifecycle.activate(state);
        if (previous === null)
            return;
        if (previous.type !== "active" || previous.latestSnapshot !== state.latestSnapshot)
            this.onSnapshot?.(state.latestSnapshot);
    }
    /** @internal */
    end(state) {
        this.lifecycle.end(state, "state");
    }
}
