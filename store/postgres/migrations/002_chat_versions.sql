-- A chat's version: every change adds one, in the transaction that makes it, so that an
-- instance may keep a chat it read or wrote (store/postgres/cache.py) and know whether it
-- is still current. Whatever writes a chat's rows must add one too.
ALTER TABLE chats ADD COLUMN version bigint NOT NULL DEFAULT 0;
