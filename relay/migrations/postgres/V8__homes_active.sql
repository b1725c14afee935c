-- MaxConcurrentUsers across relays (issue 19): a user holding at least one session anywhere is active; admitting a
-- user's first session counts the active users under an advisory lock, so two relays racing for the last slot cannot
-- both take it.
ALTER TABLE homes ADD COLUMN IF NOT EXISTS active BOOLEAN NOT NULL DEFAULT false;
