-- The PS psgate> prompt's variables and history per user (issue 19), as CLIXML sealed with the relays' key: the
-- relay taking a user over (or restarted) takes them back.
CREATE TABLE IF NOT EXISTS prompt_states (owner TEXT PRIMARY KEY NOT NULL, sealed BYTEA NOT NULL, updated BIGINT NOT NULL);
