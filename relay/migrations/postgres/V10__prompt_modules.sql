-- The modules Import-PSSession made at the PS psgate> prompt, per user (issue 19): their proxies and format views as
-- JSON sealed with the relays' key, written when they change (apart from prompt_states, written after every line).
CREATE TABLE IF NOT EXISTS prompt_modules (owner TEXT PRIMARY KEY NOT NULL, sealed BYTEA NOT NULL, updated BIGINT NOT NULL);
