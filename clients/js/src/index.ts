// @natter/client: the Natter chat gateway from a browser or Node, with the names and shapes of the TalkJS
// JavaScript Data API (getTalkSession, ConversationRef, MessageRef, MessageSubscription, UserRef, UserSubscription, and the
// conversation, participants, typing and online subscriptions).

export { getTalkSession, TalkSession, ConversationRef, MessageRef, ReactionRef, MessageSubscription } from "./session.js";
export { UserRef, UserSubscription } from "./user.js";
export { ConversationListSubscription, LiveSubscription, ParticipantSubscription } from "./live.js";
export type {
  ConversationSubscription,
  LiveSubscriptionState,
  TypingSubscription,
  UserOnlineSubscription,
} from "./live.js";
export type { TalkSessionOptions } from "./session.js";
export type { ConnectionState, WebSocketConstructor, WebSocketLike } from "./connection.js";
export { NatterError } from "./types.js";
export type {
  ContentBlock,
  ConversationSnapshot,
  ParticipantSnapshot,
  TypingSnapshot,
  UserOnlineSnapshot,
  EditMessageParams,
  MessageSnapshot,
  MessageSubscriptionState,
  ReactionSnapshot,
  ReferencedMessageSnapshot,
  SendMessageParams,
  TextNode,
  UserSnapshot,
  UserSubscriptionState,
} from "./types.js";
