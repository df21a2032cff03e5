-- Version 4: the log holds users' streams beside conversations' (store::log): `stream` says whose sequence `seq`
-- counts ('c': the conversation `stream_id`, 'u': the user `stream_id`); and webhook delivery keeps its place.
ALTER TABLE event_log RENAME COLUMN conversation_id TO stream_id;
ALTER TABLE event_log ADD COLUMN stream TEXT NOT NULL DEFAULT 'c';
DROP INDEX event_log_by_conversation;
CREATE UNIQUE INDEX event_log_by_stream ON event_log (app_id, stream, stream_id, seq);

-- The per-user event counter, as `sequences` is per conversation.
CREATE TABLE user_sequences (
    app_id   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
) WITHOUT ROWID;

-- Where each webhook endpoint's delivery stands: the receiver acknowledged (or delivery gave up on) every event of
-- the app up to `position`. The node that delivers it holds it until `lease_until` (Unix ms) and renews it; another
-- node takes it over only once the lease has lapsed. Pruning keeps what a live endpoint has not been given yet.
CREATE TABLE webhook_cursors (
    app_id      TEXT NOT NULL,
    url         TEXT NOT NULL,
    position    INTEGER NOT NULL,
    owner       TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (app_id, url)
) WITHOUT ROWID;

-- Webhook events given up on after retrying for the configured time.
CREATE TABLE webhook_failures (
    app_id     TEXT NOT NULL,
    url        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    type       TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at  INTEGER NOT NULL,
    PRIMARY KEY (app_id, url, event_id)
) WITHOUT ROWID;
