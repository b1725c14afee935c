-- Sessions that cannot move to another relay (issue 19): SSH and the local host, whose connection is the relay
-- process's own. Kept so that a relay taking over a relay gone shows them Broken with the reason (and can open them
-- again with one action), never as if they had not been. The target without its password; the password sealed.
CREATE TABLE IF NOT EXISTS pinned_sessions (key TEXT PRIMARY KEY NOT NULL, relay TEXT NOT NULL, owner TEXT NOT NULL,
    target TEXT NOT NULL, sealed_password BLOB NULL, opened INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS pinned_sessions_relay ON pinned_sessions (relay);
