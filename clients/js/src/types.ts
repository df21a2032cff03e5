// The shapes the gateway sends (proto/PROTOCOL.md), named as in the TalkJS Data API.

export interface UserSnapshot {
  readonly id: string;
  readonly name: string;
  readonly custom: Readonly<Record<string, string>>;
  readonly photoUrl: string | null;
  readonly role: string;
  readonly locale: string | null;
  readonly welcomeMessage: string | null;
}

export interface ReactionSnapshot {
  readonly emoji: string;
  readonly count: number;
  readonly currentUserReacted: boolean;
}

/** A text node: a string, or formatting with children, or a leaf with text. */
export type TextNode =
  | string
  | { readonly type: "bold" | "italic" | "strikethrough" | "bulletList" | "bulletPoint"; readonly children: readonly TextNode[] }
  | { readonly type: "codeSpan" | "customEmoji"; readonly text: string }
  | { readonly type: "link"; readonly url: string; readonly children: readonly TextNode[] }
  | {
      readonly type: "actionLink" | "actionButton";
      readonly action: string;
      readonly params: Readonly<Record<string, string>>;
      readonly children: readonly TextNode[];
    }
  | { readonly type: "autoLink"; readonly url: string; readonly text: string }
  | { readonly type: "mention"; readonly id: string; readonly text: string };

export type ContentBlock =
  | { readonly type: "text"; readonly children: readonly TextNode[] }
  | { readonly type: "file"; readonly url: string; readonly size: number; readonly filename: string }
  | { readonly type: "location"; readonly latitude: number; readonly longitude: number };

export interface ReferencedMessageSnapshot {
  readonly id: string;
  readonly type: "UserMessage" | "SystemMessage";
  readonly sender: UserSnapshot | null;
  readonly content: readonly ContentBlock[];
  readonly plaintext: string;
  readonly custom: Readonly<Record<string, string>>;
  readonly createdAt: number;
  readonly editedAt: number | null;
  readonly origin: string;
  readonly referencedMessageId: string | null;
}

export interface MessageSnapshot extends ReferencedMessageSnapshot {
  /** The sequence number of the event that created the message; windows are ordered by it. */
  readonly seq: number;
  readonly referencedMessage: ReferencedMessageSnapshot | null;
  readonly reactions: readonly ReactionSnapshot[];
}

/** The state of a subscription, as TalkJS's `MessageSubscription.state`. */
export type MessageSubscriptionState =
  | { readonly type: "pending" }
  | {
      readonly type: "active";
      /** Newest first; `null` while the user does not take part in the conversation. */
      readonly latestSnapshot: readonly MessageSnapshot[] | null;
      readonly loadedAll: boolean;
    }
  | { readonly type: "unsubscribed" }
  | { readonly type: "error"; readonly error: NatterError };

/** The state of a user subscription, as TalkJS's `UserSubscription.state`. */
export type UserSubscriptionState =
  | { readonly type: "pending" }
  | {
      readonly type: "active";
      /** The user's public fields; `null` while the user does not exist. */
      readonly latestSnapshot: UserSnapshot | null;
    }
  | { readonly type: "unsubscribed" }
  | { readonly type: "error"; readonly error: NatterError };

/** An error the gateway (or the connection) gave: `code` as in proto/PROTOCOL.md, with its reasons. */
export class NatterError extends Error {
  readonly code: string;
  readonly reasons: readonly string[];

  constructor(code: string, reasons: readonly string[] = []) {
    super(reasons.length > 0 ? `${code}: ${reasons.join("; ")}` : code);
    this.name = "NatterError";
    this.code = code;
    this.reasons = reasons;
  }
}

/** What `send` takes besides a plain string. */
export interface SendMessageParams {
  text?: string;
  content?: readonly unknown[];
  custom?: Record<string, string>;
  /** The message this one replies to, by id or reference. */
  referencedMessage?: string | { readonly id: string };
  /** Makes a retried send safe: the same key within 24 h returns the first message. */
  idempotencyKey?: string;
}

export interface EditMessageParams {
  text?: string;
  content?: readonly unknown[];
  /** A patch: `null` removes a key. */
  custom?: Record<string, string | null> | null;
}

/** The Data API's ConversationSnapshot: a conversation as the session's user sees it. */
export interface ConversationSnapshot {
  readonly id: string;
  readonly subject: string | null;
  readonly photoUrl: string | null;
  readonly welcomeMessages: readonly string[];
  readonly custom: Readonly<Record<string, string>>;
  readonly createdAt: number;
  /** When the session's user joined. */
  readonly joinedAt: number;
  readonly lastMessage: MessageSnapshot | null;
  readonly unreadMessageCount: number;
  /** The `createdAt` of the newest message the user has read (0 before any). */
  readonly readUntil: number;
  /** The same for the participant furthest behind. */
  readonly everyoneReadUntil: number;
  readonly isUnread: boolean;
  readonly access: "ReadWrite" | "Read";
  readonly notify: boolean | "MentionsOnly";
}

export interface ParticipantSnapshot {
  readonly user: UserSnapshot;
  readonly access: "ReadWrite" | "Read";
  readonly notify: boolean | "MentionsOnly";
  readonly joinedAt: number;
}

/** Who else types: at most five, longest typing first, or many. */
export type TypingSnapshot =
  | { readonly many: false; readonly users: readonly UserSnapshot[] }
  | { readonly many: true };

export interface UserOnlineSnapshot {
  readonly user: UserSnapshot;
  readonly isConnected: boolean;
}
