// The live subscriptions whose every frame is a whole state: `ConversationRef.subscribe`,
// `subscribeParticipants`, `subscribeTyping` and `UserRef.subscribeOnline`, as in the TalkJS Data API
// (proto/PROTOCOL.md, "Conversation, participants, typing and online subscriptions"). The latest frame wins;
// nothing is replayed, so after a reconnect each subscribes again and its first frame is the state as it is then.
// Subscriptions to one thing in a session share one server subscription.

import { Lifecycle, type EndedState } from "./lifecycle.js";
import type { TalkSession } from "./session.js";
import {
  NatterError,
  type ConversationSnapshot,
  type ParticipantSnapshot,
  type TypingSnapshot,
  type UserOnlineSnapshot,
} from "./types.js";

type Frame = Record<string, unknown>;

/** @internal What a live subscription is of. */
export type LiveKind = "conversation" | "participants" | "typing" | "online" | "conversations";

const SUFFIX: Record<LiveKind, string> = {
  conversation: "Conversation",
  participants: "Participants",
  typing: "Typing",
  online: "Online",
  conversations: "Conversations",
};

/** What a `subscribeParticipants` or a `subscribeConversations` gets without a `limit`, and the most it may ask for. */
const DEFAULT_LIMIT: Partial<Record<LiveKind, number>> = { participants: 10, conversations: 20 };
const MAX_LIMIT: Partial<Record<LiveKind, number>> = { participants: 50, conversations: 30 };

/** The field naming what a subscription is about; the conversation list has none (its id is ""). */
function idField(kind: LiveKind): "userId" | "conversationId" | null {
  if (kind === "conversations") return null;
  return kind === "online" ? "userId" : "conversationId";
}

function request(kind: LiveKind, type: string, id: string): Frame {
  const field = idField(kind);
  return field === null ? { type } : { type, [field]: id };
}

/** @internal The session's map key of a live subscription. */
export function liveKey(kind: LiveKind, id: string): string {
  return `${kind}\u0000${id}`;
}

/** @internal Says which live subscription a frame is for, if any. */
export function liveKeyOf(frame: Frame): string | null {
  const kind = frame.type === "subscriptionError" ? frame.subscription : frame.type;
  if (kind !== "conversation" && kind !== "participants" && kind !== "typing" && kind !== "online" && kind !== "conversations") {
    return null;
  }
  const field = idField(kind);
  const id = field === null ? "" : frame[field];
  return typeof id === "string" ? liveKey(kind, id) : null;
}

/** The state of a live subscription; `latestSnapshot` is `null` where the Data API says so. */
export type LiveSubscriptionState<T, Extra = {}> =
  | { readonly type: "pending" }
  | ({ readonly type: "active"; readonly latestSnapshot: T | null } & Extra)
  | { readonly type: "unsubscribed" }
  | { readonly type: "error"; readonly error: NatterError };

type Active<T, Extra> = Extract<LiveSubscriptionState<T, Extra>, { type: "active" }>;

/** @internal What a shared subscription feeds. */
export interface LiveFront {
  receive(frame: Frame): void;
  end(state: EndedState): void;
}

/**
 * @internal Sends a subscribe; `fail` ends the subscription when the refusal is final. A subscribe lost with a
 * dropped connection is sent again on reconnect, and one racing a resubscription is already in place.
 */
export function requestSubscription(session: TalkSession, frame: Frame, fail: (error: NatterError) => void): void {
  session.connection.request(frame).catch((error: NatterError) => {
    if (error.code === "CLOSED" && session.connectionState !== "closed") return;
    if (error.code === "ALREADY_SUBSCRIBED") return;
    fail(error);
  });
}

/** @internal The one server subscription behind every front of one thing. */
export class SharedLiveSubscription {
  private readonly fronts = new Set<LiveFront>();
  private latest: Frame | null = null;

  constructor(
    private readonly session: TalkSession,
    readonly kind: LiveKind,
    readonly id: string,
    /** Fields every subscribe of this one carries (a conversation list's filter). */
    private readonly extra: Frame = {},
  ) {}

  add(front: LiveFront): void {
    this.fronts.add(front);
    if (this.latest !== null) front.receive(this.latest);
  }

  remove(front: LiveFront): void {
    this.fronts.delete(front);
    if (this.fronts.size > 0) return;
    this.session.live.delete(liveKey(this.kind, this.id));
    this.session.connection.request(request(this.kind, `unsubscribe${SUFFIX[this.kind]}`, this.id)).catch(() => {});
  }

  /**
   * Subscribes on the server. After a reconnect a window that grew past its default asks for as many as it held;
   * one holding fewer was not full and takes the default again.
   */
  start(): void {
    const frame: Frame = { ...request(this.kind, `subscribe${SUFFIX[this.kind]}`, this.id), ...this.extra };
    const held = this.latest?.[this.kind];
    const [base, max] = [DEFAULT_LIMIT[this.kind], MAX_LIMIT[this.kind]];
    if (base !== undefined && max !== undefined && Array.isArray(held) && held.length > base) {
      frame.limit = Math.min(held.length, max);
    }
    requestSubscription(this.session, frame, (error) => this.fail(error));
  }

  /** @internal `loadMoreParticipants` or `loadMoreConversations`; the server coalesces concurrent calls. */
  async loadMore(count?: number): Promise<void> {
    const frame = request(this.kind, `loadMore${SUFFIX[this.kind]}`, this.id);
    if (count !== undefined) frame.count = count;
    await this.session.connection.request(frame);
  }

  receive(frame: Frame): void {
    if (frame.type === "subscriptionError") {
      this.fail(new NatterError(String(frame.errorCode), (frame.reasons as string[]) ?? []));
      return;
    }
    this.latest = frame;
    for (const front of this.fronts) front.receive(frame);
  }

  fail(error: NatterError): void {
    if (this.session.live.get(liveKey(this.kind, this.id)) === this) this.session.live.delete(liveKey(this.kind, this.id));
    for (const front of [...this.fronts]) front.end({ type: "error", error });
    this.fronts.clear();
  }
}

/** A live view: `pending`, then `active` with each new state, until `unsubscribed` or `error`. */
export class LiveSubscription<T, Extra = {}> implements LiveFront {
  private readonly lifecycle = new Lifecycle<Active<T, Extra>>();
  /** Resolves with the first active state; rejects if the subscription ends first. */
  readonly connected: Promise<Active<T, Extra>> = this.lifecycle.connected;
  /** Resolves when the subscription ends (`unsubscribed` or `error`). */
  readonly terminated: Promise<EndedState> = this.lifecycle.terminated;

  /** @internal */
  constructor(
    private readonly shared: SharedLiveSubscription | null,
    private readonly read: (frame: Frame) => Active<T, Extra>,
    private readonly onSnapshot?: (snapshot: T | null) => void,
  ) {}

  get state(): LiveSubscriptionState<T, Extra> {
    return this.lifecycle.current;
  }

  unsubscribe(): void {
    if (this.lifecycle.ended) return;
    this.end({ type: "unsubscribed" });
    this.shared?.remove(this);
  }

  /** @internal */
  receive(frame: Frame): void {
    const state = this.read(frame);
    if (this.lifecycle.activate(state) !== null) this.onSnapshot?.(state.latestSnapshot);
  }

  /** @internal */
  end(state: EndedState): void {
    this.lifecycle.end(state, "state");
  }

  /** @internal */
  get sharedSubscription(): SharedLiveSubscription | null {
    return this.shared;
  }
}

export type ConversationSubscription = LiveSubscription<ConversationSnapshot>;

/** The user's conversations, most recent activity first; `loadedAll` once no older one is left. */
export class ConversationListSubscription extends LiveSubscription<readonly ConversationSnapshot[], { readonly loadedAll: boolean }> {
  /** Extends the list by `count` older conversations (default 20, at most 30); resolves once they are in it. */
  async loadMore(count?: number): Promise<void> {
    const shared = this.sharedSubscription;
    if (shared === null) throw new Error("the subscription has ended");
    await shared.loadMore(count);
  }
}
export type TypingSubscription = LiveSubscription<TypingSnapshot>;
export type UserOnlineSubscription = LiveSubscription<UserOnlineSnapshot>;

/** The participants window: the most recently joined first, `loadedAll` once nobody earlier is left. */
export class ParticipantSubscription extends LiveSubscription<readonly ParticipantSnapshot[], { readonly loadedAll: boolean }> {
  /** Extends the window by `count` earlier joiners (default 10, at most 50); resolves once they are in it. */
  async loadMore(count?: number): Promise<void> {
    const shared = this.sharedSubscription;
    if (shared === null) throw new Error("the subscription has ended");
    await shared.loadMore(count);
  }
}

function frozen<T>(value: unknown): T | null {
  return value === null || value === undefined ? null : (Object.freeze(value) as T);
}

/** @internal How each kind reads its frames. */
export const readers = {
  conversation: (frame: Frame) => ({ type: "active" as const, latestSnapshot: frozen<ConversationSnapshot>(frame.conversation) }),
  participants: (frame: Frame) => ({
    type: "active" as const,
    latestSnapshot: frozen<readonly ParticipantSnapshot[]>(frame.participants),
    loadedAll: frame.loadedAll === true,
  }),
  typing: (frame: Frame) => ({ type: "active" as const, latestSnapshot: frozen<TypingSnapshot>(frame.typing) }),
  online: (frame: Frame) => ({ type: "active" as const, latestSnapshot: frozen<UserOnlineSnapshot>(frame.online) }),
  conversations: (frame: Frame) => ({
    type: "active" as const,
    latestSnapshot: frozen<readonly ConversationSnapshot[]>(frame.conversations),
    loadedAll: frame.loadedAll === true,
  }),
};

/** @internal Starts a front on the session's shared subscription of one thing (starting that if it is the first). */
export function subscribeLive<S extends LiveFront>(
  session: TalkSession,
  kind: LiveKind,
  id: string,
  makeFront: (shared: SharedLiveSubscription | null) => S,
  extra: Frame = {},
): S {
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
  if (fresh) shared.start();
  return front;
}
