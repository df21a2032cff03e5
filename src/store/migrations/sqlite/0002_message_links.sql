-- Version 2: whether a message's text may hold links and action buttons. REST and system messages may (1);
-- text that users send over the socket may not (0), so it is parsed without those rules when it is read back.
ALTER TABLE messages ADD COLUMN links_allowed INTEGER NOT NULL DEFAULT 1;
