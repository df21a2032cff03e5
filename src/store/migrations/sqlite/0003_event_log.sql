-- The event log: every committed event, written in the transaction of the change it records (store::log).
-- `position` orders events by commit across every app and conversation. It is the rowid, which SQLite takes as one
-- more than the largest in the table; pruning never deletes the newest row, so a position is never reused and a
-- consumer's "after position P" stays meaningful (AUTOINCREMENT would cost a write to sqlite_sequence per event).
CREATE TABLE event_log (
    position        INTEGER PRIMARY KEY,
    app_id          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,   -- the event kind, as in the protocol
    data            TEXT NOT NULL,   -- JSON record of the event (store::log)
    committed_at    INTEGER NOT NULL -- Unix milliseconds
);
-- Replays of one conversation by seq (resume, hole repair).
CREATE UNIQUE INDEX event_log_by_conversation ON event_log (app_id, conversation_id, seq);
-- Everything after a position, for one app (webhooks), without scanning other apps' events.
CREATE INDEX event_log_by_app ON event_log (app_id, position);
