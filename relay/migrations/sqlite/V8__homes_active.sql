-- MaxConcurrentUsers across relays (issue 19): a user holding at least one session anywhere is active; admitting a
-- user's first session counts the active users in one transaction, so two racing for the last slot cannot both take it.
ALTER TABLE homes ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
