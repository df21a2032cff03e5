-- Version 5: unread counts kept, not counted. `sequences.message_count` counts the messages a conversation ever
-- had (it never goes down); a participant's unread count is `message_count - unread_base`. Reading, and sending
-- (which reads), set `unread_base` to `message_count`; a join sets it so that every message not the user's own
-- is unread; deleting a message someone had not read raises their `unread_base` by one.
ALTER TABLE sequences ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
UPDATE sequences SET message_count = (SELECT COUNT(*) FROM messages m
    WHERE m.app_id = sequences.app_id AND m.conversation_id = sequences.conversation_id);
ALTER TABLE participants ADD COLUMN unread_base INTEGER NOT NULL DEFAULT 0;
UPDATE participants SET unread_base =
    COALESCE((SELECT s.message_count FROM sequences s
        WHERE s.app_id = participants.app_id AND s.conversation_id = participants.conversation_id), 0)
    - (SELECT COUNT(*) FROM messages m
        WHERE m.app_id = participants.app_id AND m.conversation_id = participants.conversation_id
        AND m.seq > participants.read_until_seq AND (m.sender_id IS NULL OR m.sender_id != participants.user_id));
