-- Search by chat, not by message: how often each word occurs in each chat (any branch), kept
-- by the database itself as message rows come and go. A common word's best chats are then
-- read from an index in order, not ranked from every message that holds the word; a
-- prefix is a range of that index. Message rows are only inserted and deleted with their
-- content (a move changes only their place), so these two triggers keep the counts.
-- A deleted chat's rows go with its messages' (no foreign key: it would need an index by
-- chat, and chat ids are never used again).
CREATE TABLE chat_words (
    word text COLLATE "C" NOT NULL,   -- a lexeme of the chatproxy text search configuration
    chat_id bigint NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (word, chat_id) INCLUDE (hits)  -- a search reads the index alone
);

CREATE FUNCTION chat_words_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chat_words (word, chat_id, hits)
    SELECT w.lexeme, a.chat_id, sum(coalesce(array_length(w.positions, 1), 1))
    FROM added a, unnest(a.search) w
    GROUP BY w.lexeme, a.chat_id
    ON CONFLICT (word, chat_id) DO UPDATE SET hits = chat_words.hits + excluded.hits;
    RETURN NULL;
END $$;

CREATE FUNCTION chat_words_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE chat_words c SET hits = c.hits - gone.hits
    FROM (SELECT w.lexeme AS word, r.chat_id, sum(coalesce(array_length(w.positions, 1), 1)) AS hits
          FROM removed r, unnest(r.search) w GROUP BY w.lexeme, r.chat_id) gone
    WHERE c.word = gone.word AND c.chat_id = gone.chat_id;
    DELETE FROM chat_words c
    USING (SELECT DISTINCT w.lexeme AS word, r.chat_id FROM removed r, unnest(r.search) w) gone
    WHERE c.word = gone.word AND c.chat_id = gone.chat_id AND c.hits <= 0;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_added AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION chat_words_added();
CREATE TRIGGER messages_removed AFTER DELETE ON messages
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION chat_words_removed();

INSERT INTO chat_words (word, chat_id, hits)
SELECT w.lexeme, m.chat_id, sum(coalesce(array_length(w.positions, 1), 1))
FROM messages m, unnest(m.search) w GROUP BY w.lexeme, m.chat_id;

-- Message rows are no longer searched through an index of their own: only the few of the
-- chats found, for the snippet. Its upkeep slowed every insert.
DROP INDEX messages_search;
