-- chatproxy's tables. The chat as GET /chat gives it is put back together from them
-- (store/postgres/tree.py): settings from the chats row, each message a row, and the
-- branches the folder keeps under "alternatives" as rows of their own.

-- A word inside Chinese or Japanese text (written without spaces) is found by trigrams;
-- accents are ignored, as the folder's search ignores them. Both extensions are "trusted":
-- the owner of the database may create them, no superuser is needed.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Words as the folder's search finds them: no stemming, no stop words, accents ignored.
CREATE TEXT SEARCH CONFIGURATION chatproxy (COPY = pg_catalog.simple);
ALTER TEXT SEARCH CONFIGURATION chatproxy
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH unaccent, simple;

-- JSON columns are "json", not "jsonb": json keeps the text as chatproxy wrote it (key
-- order, \u0000, a lone surrogate's escape), and nothing here is queried inside a message.
-- Text columns hold copies for search and ordering only, where a NUL is left out.

CREATE TABLE chats (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The name as the folder spells it in a file name (store/names.py): reversible, one
    -- per name, and free of NUL, which a name may hold but PostgreSQL text may not.
    stem text NOT NULL UNIQUE,
    name text NOT NULL,               -- the name itself, for ordering and search
    settings json NOT NULL,           -- every key of the chat but messages, updated_at and the branches
    updated_at text,                  -- the chat's "updated_at": every change sets it
    model json,                       -- settings' "model", for the listing
    prompt text,                      -- settings' "system_prompt", for search
    search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('chatproxy', name), 'A') || setweight(to_tsvector('chatproxy', coalesce(prompt, '')), 'D')
    ) STORED
);
CREATE INDEX chats_name ON chats (name COLLATE "C", stem);
CREATE INDEX chats_search ON chats USING gin (search);
CREATE INDEX chats_trigrams ON chats USING gin ((name || E'\n' || coalesce(prompt, '')) gin_trgm_ops);

-- The alternatives: branch 0 is the chat's current branch ("messages") and has no row;
-- branch n > 0 is the tail at alternatives[key][ordinal] of branch "parent".
CREATE TABLE branches (
    chat_id bigint NOT NULL REFERENCES chats ON DELETE CASCADE,
    branch integer NOT NULL CHECK (branch > 0),
    parent integer NOT NULL,
    key text NOT NULL,
    ordinal integer NOT NULL,
    bare boolean NOT NULL DEFAULT false,  -- the tail was written without an "alternatives" key
    PRIMARY KEY (chat_id, branch)
);

-- A turn appends rows: its cost does not grow with the chat's length. Positions in a
-- branch run 0, 1, 2... A change that moves messages between branches checks their
-- uniqueness at the end of each statement (DEFERRABLE), not row by row.
CREATE TABLE messages (
    chat_id bigint NOT NULL REFERENCES chats ON DELETE CASCADE,
    branch integer NOT NULL,
    position integer NOT NULL,
    body json NOT NULL,
    content text,                     -- the message's "content", for search
    search tsvector GENERATED ALWAYS AS (to_tsvector('chatproxy', coalesce(content, ''))) STORED,
    -- Text written without spaces between words (Chinese, Japanese, Korean): only these
    -- rows are in the trigram index, which is large and slows every insert.
    unspaced boolean GENERATED ALWAYS AS (
        content ~ '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]'
    ) STORED,
    PRIMARY KEY (chat_id, branch, position) DEFERRABLE INITIALLY IMMEDIATE
);
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_trigrams ON messages USING gin (content gin_trgm_ops) WHERE unspaced;

-- Holding a chat for a turn or a change, across instances, without holding a connection:
-- a lease by name (a chat need not exist to be held). Each taking draws a new epoch, so a
-- write by an owner whose lease expired and was taken over is refused (fencing).
CREATE SEQUENCE lease_epochs;
CREATE TABLE leases (
    stem text PRIMARY KEY,
    owner text NOT NULL,
    epoch bigint NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL
);

-- The running turn of a chat and its journal: the reply so far, written about once a
-- second, where a turn whose instance died is finished from.
CREATE TABLE turns (
    chat_id bigint PRIMARY KEY REFERENCES chats ON DELETE CASCADE,
    turn_id text NOT NULL,
    turn json NOT NULL,               -- the chat's "running_turn"
    epoch bigint NOT NULL,            -- the lease it runs under: live while that lease is
    reply json,
    journaled_at timestamptz
);
