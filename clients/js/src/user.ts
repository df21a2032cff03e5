// User subscriptions: `session.user(id).subscribe()`, the TalkJS Data API's `UserRef.subscribe`. Every `user` frame
// carries the user's whole state and the `seq` of the user's stream; the highest `seq` wins (proto/PROTOCOL.md,
// "User subscriptions"). Subscriptions to one user in a session share one server subscription.

import { Lifecycle, type EndedState } from "./lifecycle.js";
import type { TalkSession } from "./session.js";
import type { NatterError, UserOnlineSnapshot, UserSnapshot, UserSubscriptionState } from "./types.js";
import { LiveSubscription, readers, requestSubscription, subscribeLive, type UserOnlineSubscription } from "./live.js";

type Frame = Record<string, unknown>;
type ActiveState = Extract<UserSubscriptionState, { type: "active" }>;

export class UserRef {
  constructor(
    private readonly session: TalkSession,
    readonly id: string,
  ) {}

  /** Subscribes to the user's public fields; `onSnapshot` is called with each new state. */
  subscribe(onSnapshot?: (snapshot: UserSnapshot | null) => void): UserSubscription {
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
    } else {
      shared.add(front);
    }
    return front;
  }

  /** Subscribes to whether the user is connected (`null` while they do not exist). */
  subscribeOnline(onSnapshot?: (snapshot: UserOnlineSnapshot | null) => void): UserOnlineSubscription {
    return subscribeLive(this.session, "online", this.id, (shared) => new LiveSubscription<UserOnlineSnapshot>(shared, readers.online, onSnapshot));
  }
}

/** @internal The one server subscription behind every `UserSubscription` of a user in a session. */
export class SharedUserSubscription {
  private readonly fronts = new Set<UserSubscription>();
  private seq = -1;
  private snapshot: UserSnapshot | null = null;
  private active = false;

  constructor(
    private readonly session: TalkSession,
    private readonly userId: string,
  ) {}

  add(front: UserSubscription): void {
    this.fronts.add(front);
    if (this.active) front.update({ type: "active", latestSnapshot: this.snapshot });
  }

  /** Says whether that was the last one. */
  remove(front: UserSubscription): boolean {
    this.fronts.delete(front);
    if (this.fronts.size > 0) return false;
    this.session.users.delete(this.userId);
    this.session.connection.request({ type: "unsubscribeUser", userId: this.userId }).catch(() => {});
    return true;
  }

  /** Subscribes on the server (again after a reconnect: the first frame is the state as it is then). */
  start(): void {
    requestSubscription(this.session, { type: "subscribeUser", userId: this.userId }, (error) => this.fail(error));
  }

  receive(frame: Frame): void {
    const seq = Number(frame.seq);
    if (!(seq > this.seq)) return;
    this.seq = seq;
    this.snapshot = (frame.user as UserSnapshot | null) === null ? null : Object.freeze({ ...(frame.user as UserSnapshot) });
    this.active = true;
    for (const front of this.fronts) front.update({ type: "active", latestSnapshot: this.snapshot });
  }

  fail(error: NatterError): void {
    this.session.users.delete(this.userId);
    for (const front of [...this.fronts]) front.end({ type: "error", error });
    this.fronts.clear();
  }
}

/** A live view of one user: `pending`, then `active`, until `unsubscribed` or `error`. */
export class UserSubscription {
  private readonly lifecycle = new Lifecycle<ActiveState>();
  /** Resolves with the first active state; rejects if the subscription ends first. */
  readonly connected: Promise<ActiveState> = this.lifecycle.connected;
  /** Resolves when the subscription ends (`unsubscribed` or `error`). */
  readonly terminated: Promise<EndedState> = this.lifecycle.terminated;

  constructor(
    private readonly session: TalkSession,
    readonly userId: string,
    private readonly onSnapshot?: (snapshot: UserSnapshot | null) => void,
  ) {}

  get state(): UserSubscriptionState {
    return this.lifecycle.current;
  }

  unsubscribe(): void {
    if (this.lifecycle.ended) return;
    this.end({ type: "unsubscribed" });
    this.session.users.get(this.userId)?.remove(this);
  }

  /** @internal */
  update(state: ActiveState): void {
    const previous = this.lifecycle.activate(state);
    if (previous === null) return;
    if (previous.type !== "active" || previous.latestSnapshot !== state.latestSnapshot) this.onSnapshot?.(state.latestSnapshot);
  }

  /** @internal */
  end(state: EndedState): void {
    this.lifecycle.end(state, "state");
  }
}
