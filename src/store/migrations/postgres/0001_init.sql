-- Natter schema for PostgreSQL, version 1: the same tables as SQLite's migrations 0001 to 0003, so that one set of
-- statements (store::sql) serves both. Integers are BIGINT, flags BIGINT 0/1, maps and lists JSON text. Keys use
-- the "C" collation: ids sort by their bytes, as in SQLite, whatever the database's locale.

CREATE TABLE users (
    app_id          TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    name            TEXT NOT NULL,
    email           TEXT,
    phone           TEXT,
    photo_url       TEXT,
    locale          TEXT,
    role            TEXT,
    welcome_message TEXT,
    custom          TEXT NOT NULL,
    push_tokens     TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);

-- The per-conversation event counter; it outlives the conversation, so a sequence number is never reused. Its
-- row is locked by the transaction that takes the next number, which orders one conversation's writes.
CREATE TABLE sequences (
    app_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    last_seq        BIGINT NOT NULL,
    PRIMARY KEY (app_id, conversation_id)
);

CREATE TABLE conversations (
    app_id           TEXT COLLATE "C" NOT NULL,
    id               TEXT COLLATE "C" NOT NULL,
    subject          TEXT,
    photo_url        TEXT,
    welcome_messages TEXT,
    custom           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_message_at  BIGINT,
    last_activity_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);
CREATE INDEX conversations_by_activity ON conversations (app_id, last_activity_at, id);
CREATE INDEX conversations_by_creation ON conversations (app_id, created_at, id);

CREATE TABLE participants (
    app_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    access          TEXT NOT NULL,
    notify          TEXT NOT NULL,
    joined_at       BIGINT NOT NULL,
    read_until_seq  BIGINT NOT NULL,
    marked_unread   BIGINT NOT NULL,
    PRIMARY KEY (app_id, conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (app_id, user_id, conversation_id);

-- Uploaded files live in the database, so that every node serves every file.
CREATE TABLE files (
    app_id       TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    token        TEXT COLLATE "C" NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    data         BYTEA NOT NULL,
    message_id   TEXT COLLATE "C",
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (app_id, id)
);
CREATE UNIQUE INDEX files_by_token ON files (app_id, token);

CREATE TABLE messages (
    app_id                TEXT COLLATE "C" NOT NULL,
    conversation_id       TEXT COLLATE "C" NOT NULL,
    id                    TEXT COLLATE "C" NOT NULL,
    seq                   BIGINT NOT NULL,
    type                  TEXT NOT NULL,
    sender_id             TEXT COLLATE "C",
    text                  TEXT NOT NULL,
    custom                TEXT NOT NULL,
    referenced_message_id TEXT COLLATE "C",
    file_id               TEXT COLLATE "C",
    latitude              DOUBLE PRECISION,
    longitude             DOUBLE PRECISION,
    origin                TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    edited_at             BIGINT,
    links_allowed         BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (app_id, conversation_id, id)
);
CREATE UNIQUE INDEX messages_by_seq ON messages (app_id, conversation_id, seq);

-- `rowid` stands in for SQLite's implicit rowid: the order in which reactions of one millisecond were added.
CREATE TABLE reactions (
    rowid           BIGSERIAL,
    app_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    message_id      TEXT COLLATE "C" NOT NULL,
    emoji           TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (app_id, conversation_id, message_id, emoji, user_id)
);

CREATE TABLE idempotency_keys (
    app_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    key             TEXT COLLATE "C" NOT NULL,
    message_id      TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (app_id, conversation_id, key)
);

-- The event log (store::log). `position` comes from a sequence while the writing transaction holds its app's
-- write lock (an advisory lock, store::postgres), so within an app positions follow commit order; a sequence
-- never hands out a number twice, so positions are never reused.
CREATE TABLE event_log (
    position        BIGSERIAL PRIMARY KEY,
    app_id          TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    seq             BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    data            TEXT NOT NULL,
    committed_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX event_log_by_conversation ON event_log (app_id, conversation_id, seq);
CREATE INDEX event_log_by_app ON event_log (app_id, position);
