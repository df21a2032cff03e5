// @natter/client: the Natter chat gateway from a browser or Node, with the names and shapes of the TalkJS
// JavaScript Data API (getTalkSession, ConversationRef, MessageRef, MessageSubscription, UserRef, UserSubscription).

export { getTalkSession, TalkSession, ConversationRef, MessageRef, ReactionRef, MessageSubscription } from "./session.js";
export { UserRef, UserSubscription } from "./user.js";
export type { TalkSessionOptions } from "./session.js";
export type { ConnectionState, WebSocketConstructor, WebSocketLike } from "./connection.js";
export { NatterError } from "./types.js";
export type {
  ContentBlock,
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
