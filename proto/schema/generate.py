#!/usr/bin/env python3
"""Writes proto/schema/*.json: one JSON Schema (draft 2020-12) per WebSocket frame, plus common.json.

The schemas are data; this script only keeps their shared parts in one place. Edit it, run it, commit the output.
Tests validate every frame the server sends against these files.
"""
import json, pathlib

BASE = "https://natter.invalid/proto/schema/"
OUT = pathlib.Path(__file__).parent

def ref(name):
    return {"$ref": f"common.json#/$defs/{name}"}

string = {"type": "string"}
nullable_string = {"type": ["string", "null"]}
integer = {"type": "integer"}
request_id = ref("RequestId")
conversation_id = {"type": "string", "minLength": 1, "maxLength": 255}
custom = {"type": "object", "additionalProperties": {"type": "string"}}

text_node = {
    "oneOf": [
        {"type": "string"},
        {"type": "object", "required": ["type", "children"], "additionalProperties": False,
         "properties": {"type": {"enum": ["bold", "italic", "strikethrough", "bulletList", "bulletPoint"]},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/TextNode"}}}},
        {"type": "object", "required": ["type", "text"], "additionalProperties": False,
         "properties": {"type": {"enum": ["codeSpan", "customEmoji"]}, "text": string}},
        {"type": "object", "required": ["type", "url", "children"], "additionalProperties": False,
         "properties": {"type": {"const": "link"}, "url": string,
                        "children": {"type": "array", "items": {"$ref": "#/$defs/TextNode"}}}},
        {"type": "object", "required": ["type", "action", "params", "children"], "additionalProperties": False,
         "properties": {"type": {"enum": ["actionLink", "actionButton"]}, "action": string,
                        "params": custom, "children": {"type": "array", "items": {"$ref": "#/$defs/TextNode"}}}},
        {"type": "object", "required": ["type", "url", "text"], "additionalProperties": False,
         "properties": {"type": {"const": "autoLink"}, "url": string, "text": string}},
        {"type": "object", "required": ["type", "id", "text"], "additionalProperties": False,
         "properties": {"type": {"const": "mention"}, "id": string, "text": string}},
    ]
}

content_block = {
    "oneOf": [
        {"type": "object", "required": ["type", "children"], "additionalProperties": False,
         "properties": {"type": {"const": "text"}, "children": {"type": "array", "items": {"$ref": "#/$defs/TextNode"}}}},
        {"type": "object", "required": ["type", "url", "size", "filename"], "additionalProperties": False,
         "properties": {"type": {"const": "file"}, "url": string, "size": integer, "filename": string}},
        {"type": "object", "required": ["type", "latitude", "longitude"], "additionalProperties": False,
         "properties": {"type": {"const": "location"},
                        "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                        "longitude": {"type": "number", "minimum": -180, "maximum": 180}}},
    ]
}

user_snapshot = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "name", "custom", "photoUrl", "role", "locale", "welcomeMessage"],
    "properties": {"id": string, "name": string, "custom": custom, "photoUrl": nullable_string, "role": string,
                   "locale": nullable_string, "welcomeMessage": nullable_string},
}

reaction = {
    "type": "object", "additionalProperties": False, "required": ["emoji", "count", "currentUserReacted"],
    "properties": {"emoji": string, "count": {"type": "integer", "minimum": 1}, "currentUserReacted": {"type": "boolean"}},
}

referenced_fields = {
    "id": string,
    "type": {"enum": ["UserMessage", "SystemMessage"]},
    "sender": {"oneOf": [{"$ref": "#/$defs/UserSnapshot"}, {"type": "null"}]},
    "content": {"type": "array", "items": {"$ref": "#/$defs/ContentBlock"}},
    "plaintext": string,
    "custom": custom,
    "createdAt": integer,
    "editedAt": {"type": ["integer", "null"]},
    "origin": {"enum": ["web", "rest", "email", "import"]},
    "referencedMessageId": nullable_string,
}

message_snapshot = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "type", "seq", "sender", "content", "plaintext", "custom", "createdAt", "editedAt", "origin",
                 "referencedMessageId", "referencedMessage"],
    "properties": {**referenced_fields, "seq": {"type": "integer", "minimum": 1},
                   "referencedMessage": {"oneOf": [{"$ref": "#/$defs/ReferencedMessageSnapshot"}, {"type": "null"}]},
                   "reactions": {"type": "array", "items": {"$ref": "#/$defs/Reaction"}, "maxItems": 50}},
}

common = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": BASE + "common.json",
    "title": "Shared definitions of the Natter WebSocket protocol",
    "$defs": {
        "RequestId": {"type": "string", "minLength": 1, "maxLength": 64},
        "TextNode": text_node,
        "ContentBlock": content_block,
        "UserSnapshot": user_snapshot,
        "Reaction": reaction,
        "ReferencedMessageSnapshot": {
            "type": "object", "additionalProperties": False,
            "required": list(referenced_fields.keys()), "properties": referenced_fields,
        },
        "MessageSnapshot": message_snapshot,
        "ConversationSnapshot": {
            "type": "object", "additionalProperties": False,
            "required": ["id", "subject", "photoUrl", "welcomeMessages", "custom", "createdAt", "joinedAt",
                         "lastMessage", "unreadMessageCount", "readUntil", "everyoneReadUntil", "isUnread", "access",
                         "notify"],
            "properties": {
                "id": string, "subject": nullable_string, "photoUrl": nullable_string,
                "welcomeMessages": {"type": "array", "items": string}, "custom": custom,
                "createdAt": integer, "joinedAt": integer,
                "lastMessage": {"oneOf": [{"$ref": "#/$defs/MessageSnapshot"}, {"type": "null"}]},
                "unreadMessageCount": {"type": "integer", "minimum": 0},
                "readUntil": {"type": "integer", "minimum": 0}, "everyoneReadUntil": {"type": "integer", "minimum": 0},
                "isUnread": {"type": "boolean"},
                "access": {"enum": ["ReadWrite", "Read"]},
                "notify": {"oneOf": [{"type": "boolean"}, {"const": "MentionsOnly"}]},
            },
        },
        "ParticipantSnapshot": {
            "type": "object", "additionalProperties": False, "required": ["user", "access", "notify", "joinedAt"],
            "properties": {"user": {"$ref": "#/$defs/UserSnapshot"}, "access": {"enum": ["ReadWrite", "Read"]},
                           "notify": {"oneOf": [{"type": "boolean"}, {"const": "MentionsOnly"}]},
                           "joinedAt": integer},
        },
        "ErrorCode": {"type": "string", "pattern": "^[A-Z_]+$"},
        "Reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
}

def frame(name, title, required, properties):
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": BASE + f"{name}.json",
        "title": title,
        "type": "object",
        "additionalProperties": False,
        "required": ["type", *required],
        "properties": {"type": {"const": name}, **properties},
    }

seq = {"type": "integer", "minimum": 0}
notify = {"oneOf": [{"type": "boolean"}, {"const": "MentionsOnly"}]}
access = {"enum": ["ReadWrite", "Read"]}

def event_kind(kind, required=(), properties=None):
    return {"type": "object", "additionalProperties": False, "required": ["kind", *required],
            "properties": {"kind": {"const": kind}, **(properties or {})}}

reaction_change = {"messageId": string, "emoji": string, "userId": string}
event = {"oneOf": [
    event_kind("conversationUpdated"),
    event_kind("conversationDeleted"),
    event_kind("participantJoined", ["userId", "access", "notify"], {"userId": string, "access": access, "notify": notify}),
    event_kind("participantUpdated", ["userId", "access", "notify"], {"userId": string, "access": access, "notify": notify}),
    event_kind("participantLeft", ["userId"], {"userId": string}),
    event_kind("messageCreated", ["message"], {"message": ref("MessageSnapshot")}),
    event_kind("messageEdited", ["message"], {"message": ref("MessageSnapshot")}),
    event_kind("messageDeleted", ["messageId"], {"messageId": string}),
    event_kind("allMessagesDeleted"),
    event_kind("messageImported", ["messageId"], {"messageId": string}),
    event_kind("reactionAdded", list(reaction_change), reaction_change),
    event_kind("reactionRemoved", list(reaction_change), reaction_change),
]}

server = {
    "ok": frame("ok", "Server: a request succeeded", ["id", "result"], {"id": request_id, "result": {"type": "object"}}),
    "error": frame("error", "Server: a request or frame was refused; the connection stays open",
                   ["id", "errorCode", "reasons"],
                   {"id": {"oneOf": [request_id, {"type": "null"}]}, "errorCode": ref("ErrorCode"), "reasons": ref("Reasons")}),
    "snapshot": frame("snapshot", "Server: a whole message window (null when the user may not see the conversation)",
                      ["conversationId", "seq", "messages", "loadedAll"],
                      {"conversationId": conversation_id, "seq": seq, "loadedAll": {"type": "boolean"},
                       "messages": {"oneOf": [{"type": "array", "items": ref("MessageSnapshot")}, {"type": "null"}]},
                       "resumed": {"const": False, "description": "present when a resume could not be honoured, or a hole in the event stream could not be filled"}}),
    "resumed": frame("resumed", "Server: a resumed subscription; the events after fromSeq up to seq follow",
                     ["conversationId", "fromSeq", "seq"],
                     {"conversationId": conversation_id, "fromSeq": seq, "seq": seq}),
    "page": frame("page", "Server: older messages for the end of a window (loadMore)",
                  ["conversationId", "seq", "messages", "loadedAll"],
                  {"conversationId": conversation_id, "seq": seq, "loadedAll": {"type": "boolean"},
                   "messages": {"type": "array", "items": ref("MessageSnapshot")}}),
    "event": frame("event", "Server: a change to a conversation; the same bytes for every subscriber",
                   ["conversationId", "seq", "event"],
                   {"conversationId": conversation_id, "seq": {"type": "integer", "minimum": 1}, "event": event}),
    "user": frame("user", "Server: a user subscription's whole state (null while the user does not exist)",
                  ["userId", "seq", "user"],
                  {"userId": string, "seq": seq, "user": {"oneOf": [ref("UserSnapshot"), {"type": "null"}]}}),
    "subscriptionError": frame("subscriptionError", "Server: a subscription ended in the error state",
                               ["errorCode", "reasons"],
                               {"subscription": {"enum": ["conversation", "participants", "typing", "online",
                                                          "conversations"],
                                                 "description": "absent for a message window"},
                                "conversationId": conversation_id, "userId": string,
                                "errorCode": ref("ErrorCode"), "reasons": ref("Reasons")}),
    "conversation": frame("conversation", "Server: a conversation subscription's whole state (null when the user does not take part)",
                          ["conversationId", "conversation"],
                          {"conversationId": conversation_id,
                           "conversation": {"oneOf": [ref("ConversationSnapshot"), {"type": "null"}]}}),
    "conversations": frame("conversations", "Server: the user's conversation list, most recent activity first (never null)",
                           ["conversations", "loadedAll"],
                           {"conversations": {"type": "array", "items": ref("ConversationSnapshot")},
                            "loadedAll": {"type": "boolean"}}),
    "participants": frame("participants", "Server: a participants window, most recently joined first (null when the user does not take part)",
                          ["conversationId", "participants", "loadedAll"],
                          {"conversationId": conversation_id, "loadedAll": {"type": "boolean"},
                           "participants": {"oneOf": [{"type": "array", "items": ref("ParticipantSnapshot")},
                                                      {"type": "null"}]}}),
    "typing": frame("typing", "Server: who else is typing (null when the user does not take part)",
                    ["conversationId", "typing"],
                    {"conversationId": conversation_id,
                     "typing": {"oneOf": [
                         {"type": "null"},
                         {"type": "object", "additionalProperties": False, "required": ["many", "users"],
                          "properties": {"many": {"const": False},
                                         "users": {"type": "array", "items": ref("UserSnapshot"), "maxItems": 5}}},
                         {"type": "object", "additionalProperties": False, "required": ["many"],
                          "properties": {"many": {"const": True}}},
                     ]}}),
    "online": frame("online", "Server: a user's presence (null while the user does not exist)",
                    ["userId", "online"],
                    {"userId": string,
                     "online": {"oneOf": [{"type": "null"},
                                          {"type": "object", "additionalProperties": False,
                                           "required": ["user", "isConnected"],
                                           "properties": {"user": ref("UserSnapshot"),
                                                          "isConnected": {"type": "boolean"}}}]}}),
}

send_block = {"type": "object", "required": ["type"]}
send_content = {"oneOf": [send_block, {"type": "array", "minItems": 1, "maxItems": 1, "items": send_block}],
                "description": "one block, or an array holding one block"}
custom_patch = {"type": "object", "additionalProperties": {"type": ["string", "null"]}}
target = {"id": request_id, "conversationId": conversation_id}
message_target = {**target, "messageId": string}
page_count = {"type": "integer", "minimum": 1, "maximum": 100}

client = {
    "subscribeMessages": frame("subscribeMessages", "Client: subscribe to a conversation's messages",
                               ["id", "conversationId"],
                               {**target, "limit": page_count,
                                "resume": {"type": "object", "additionalProperties": False, "required": ["fromSeq"],
                                           "properties": {"fromSeq": seq, "oldestSeq": {"type": ["integer", "null"]},
                                                          "loadedAll": {"type": "boolean"}}}}),
    "loadMore": frame("loadMore", "Client: extend a window into the past", ["id", "conversationId"],
                      {**target, "count": page_count}),
    "unsubscribe": frame("unsubscribe", "Client: stop a subscription", ["id", "conversationId"], target),
    "updateToken": frame("updateToken", "Client: replace the session's token", ["id", "token"],
                         {"id": request_id, "token": string}),
    "sendMessage": frame("sendMessage", "Client: send a message as the session's user", ["id", "conversationId"],
                         {**target, "text": {"type": "string", "minLength": 1}, "content": send_content, "custom": custom,
                          "referencedMessageId": string, "idempotencyKey": string}),
    "editMessage": frame("editMessage", "Client: edit one of the user's messages", ["id", "conversationId", "messageId"],
                         {**message_target, "text": {"type": "string", "minLength": 1}, "content": send_content,
                          "custom": custom_patch}),
    "deleteMessage": frame("deleteMessage", "Client: delete one of the user's messages",
                           ["id", "conversationId", "messageId"], message_target),
    "deleteMessageFields": frame("deleteMessageFields", "Client: delete custom fields of one of the user's messages",
                                 ["id", "conversationId", "messageId", "fields"],
                                 {**message_target, "fields": {"type": "array", "items": string}}),
    "addReaction": frame("addReaction", "Client: react to a message", ["id", "conversationId", "messageId", "emoji"],
                         {**message_target, "emoji": string}),
    "removeReaction": frame("removeReaction", "Client: remove the user's reaction",
                            ["id", "conversationId", "messageId", "emoji"], {**message_target, "emoji": string}),
    "markAsRead": frame("markAsRead", "Client: mark a conversation read", ["id", "conversationId"], target),
    "subscribeUser": frame("subscribeUser", "Client: subscribe to a user's public fields", ["id", "userId"],
                           {"id": request_id, "userId": string}),
    "unsubscribeUser": frame("unsubscribeUser", "Client: stop a user subscription", ["id", "userId"],
                             {"id": request_id, "userId": string}),
    "subscribeConversation": frame("subscribeConversation", "Client: subscribe to a conversation as the user sees it",
                                   ["id", "conversationId"], target),
    "unsubscribeConversation": frame("unsubscribeConversation", "Client: stop a conversation subscription",
                                     ["id", "conversationId"], target),
    "subscribeParticipants": frame("subscribeParticipants", "Client: subscribe to a conversation's participants",
                                   ["id", "conversationId"],
                                   {**target, "limit": {"type": "integer", "minimum": 1, "maximum": 50}}),
    "loadMoreParticipants": frame("loadMoreParticipants", "Client: extend a participants window to earlier joiners",
                                  ["id", "conversationId"],
                                  {**target, "count": {"type": "integer", "minimum": 1, "maximum": 50}}),
    "unsubscribeParticipants": frame("unsubscribeParticipants", "Client: stop a participants subscription",
                                     ["id", "conversationId"], target),
    "subscribeConversations": frame("subscribeConversations", "Client: subscribe to the user's conversation list",
                                    ["id"],
                                    {"id": request_id, "limit": {"type": "integer", "minimum": 1, "maximum": 30},
                                     "filter": {"type": ["object", "array"],
                                                "description": "the conversation filter of GET /users/{userId}/conversations"}}),
    "loadMoreConversations": frame("loadMoreConversations", "Client: extend the conversation list to older activity",
                                   ["id"],
                                   {"id": request_id, "count": {"type": "integer", "minimum": 1, "maximum": 30}}),
    "unsubscribeConversations": frame("unsubscribeConversations", "Client: stop the conversation list", ["id"],
                                      {"id": request_id}),
    "subscribeTyping": frame("subscribeTyping", "Client: subscribe to who else is typing in a conversation",
                             ["id", "conversationId"], target),
    "unsubscribeTyping": frame("unsubscribeTyping", "Client: stop a typing subscription", ["id", "conversationId"],
                               target),
    "markAsTyping": frame("markAsTyping", "Client: the user is typing in a conversation (for 10 seconds)",
                          ["id", "conversationId"], target),
    "subscribeOnline": frame("subscribeOnline", "Client: subscribe to a user's presence", ["id", "userId"],
                             {"id": request_id, "userId": string}),
    "unsubscribeOnline": frame("unsubscribeOnline", "Client: stop an online subscription", ["id", "userId"],
                               {"id": request_id, "userId": string}),
}

def write(name, schema):
    (OUT / f"{name}.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")

write("common", common)
for name, schema in {**server, **client}.items():
    write(name, schema)
