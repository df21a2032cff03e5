-- Version 2: the apps, when no node is given them (NATTER_APPS): the first node to start creates one, and every
-- node serves what this table holds. SQLite keeps its apps in the data directory instead (apps.json).
CREATE TABLE apps (
    id         TEXT COLLATE "C" PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
