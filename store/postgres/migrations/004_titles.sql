-- What the recent listing shows of a chat (store/listing.py), kept beside its settings as
-- the model is: its title (as JSON, which holds any text; and as text, NUL left out, for
-- search, which ranks it as the name), whether it is pinned, whether archived. Read from
-- the settings here only where they hold no \u0000, which text cannot take (a chat that
-- does gets them at its next change).
ALTER TABLE chats
    ADD COLUMN title text,
    ADD COLUMN title_json json,
    ADD COLUMN pinned boolean NOT NULL DEFAULT false,
    ADD COLUMN archived boolean NOT NULL DEFAULT false;
UPDATE chats SET
    title = CASE WHEN strpos(settings::text, '\u0000') = 0 AND json_typeof(settings -> 'title') = 'string' THEN settings ->> 'title' END,
    title_json = CASE WHEN strpos(settings::text, '\u0000') = 0 AND json_typeof(settings -> 'title') = 'string' THEN settings -> 'title' END,
    pinned = CASE WHEN strpos(settings::text, '\u0000') = 0 THEN coalesce((settings -> 'pinned')::text = 'true', false) ELSE false END,
    archived = CASE WHEN strpos(settings::text, '\u0000') = 0 THEN coalesce((settings -> 'archived')::text = 'true', false) ELSE false END;
-- The model column keeps a model that is text only: the listing shows no other.
UPDATE chats SET model = NULL WHERE strpos(settings::text, '\u0000') = 0 AND json_typeof(model) <> 'string';

ALTER TABLE chats DROP COLUMN search;  -- and its index
ALTER TABLE chats ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('chatproxy', name), 'A') || setweight(to_tsvector('chatproxy', coalesce(title, '')), 'A')
    || setweight(to_tsvector('chatproxy', coalesce(prompt, '')), 'D')
) STORED;
CREATE INDEX chats_search ON chats USING gin (search);

DROP INDEX chats_trigrams;
CREATE INDEX chats_trigrams ON chats USING gin ((name || E'\n' || coalesce(title, '') || E'\n' || coalesce(prompt, '')) gin_trgm_ops);
