-- Natter schema, version 1. Every table is keyed by app first: apps never see each other's rows.
-- JSON columns hold maps and lists that are always read whole.

CREATE TABLE users (
    app_id          TEXT NOT NULL,
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    email           TEXT,            -- JSON array or NULL
    phone           TEXT,            -- JSON array or NULL
    photo_url       TEXT,
    locale          TEXT,
    role            TEXT,
    welcome_message TEXT,
    custom          TEXT NOT NULL,   -- JSON object
    push_tokens     TEXT,            -- JSON array of registered devices, or NULL
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;

-- The per-conversation event counter. It outlives the conversation, so a conversation that is deleted and
-- created again never reuses a sequence number.
CREATE TABLE sequences (
    app_id          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_seq        INTEGER NOT NULL,
    PRIMARY KEY (app_id, conversation_id)
) WITHOUT ROWID;

CREATE TABLE conversations (
    app_id           TEXT NOT NULL,
    id               TEXT NOT NULL,
    subject          TEXT,
    photo_url        TEXT,
    welcome_messages TEXT,           -- JSON array or NULL
    custom           TEXT NOT NULL,  -- JSON object
    created_at       INTEGER NOT NULL,
    last_message_at  INTEGER,        -- createdAt of the newest message, NULL when there is none
    last_activity_at INTEGER NOT NULL, -- last_message_at, else created_at: the lastActivity sort key
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
CREATE INDEX conversations_by_activity ON conversations (app_id, last_activity_at, id);
CREATE INDEX conversations_by_creation ON conversations (app_id, created_at, id);

CREATE TABLE participants (
    app_id          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    access          TEXT NOT NULL,   -- ReadWrite | Read
    notify          TEXT NOT NULL,   -- true | false | MentionsOnly
    joined_at       INTEGER NOT NULL,
    read_until_seq  INTEGER NOT NULL, -- messages with a higher seq are unread for this user
    marked_unread   INTEGER NOT NULL, -- set by an explicit mark-as-unread
    PRIMARY KEY (app_id, conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX participants_by_user ON participants (app_id, user_id, conversation_id);

CREATE TABLE files (
    app_id       TEXT NOT NULL,
    id           TEXT NOT NULL,      -- appears in the public URL
    token        TEXT NOT NULL,      -- the attachmentToken; secret until used
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    data         BLOB NOT NULL,
    message_id   TEXT,               -- set once a message carries the file
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX files_by_token ON files (app_id, token);

CREATE TABLE messages (
    app_id                TEXT NOT NULL,
    conversation_id       TEXT NOT NULL,
    id                    TEXT NOT NULL,
    seq                   INTEGER NOT NULL,
    type                  TEXT NOT NULL,  -- UserMessage | SystemMessage
    sender_id             TEXT,
    text                  TEXT NOT NULL,
    custom                TEXT NOT NULL,  -- JSON object
    referenced_message_id TEXT,
    file_id               TEXT,
    latitude              REAL,
    longitude             REAL,
    origin                TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    edited_at             INTEGER,
    PRIMARY KEY (app_id, conversation_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_seq ON messages (app_id, conversation_id, seq);

CREATE TABLE reactions (
    app_id          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    emoji           TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (app_id, conversation_id, message_id, emoji, user_id)
);

CREATE TABLE idempotency_keys (
    app_id          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    key             TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (app_id, conversation_id, key)
) WITHOUT ROWID;
