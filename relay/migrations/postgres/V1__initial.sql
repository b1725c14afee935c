-- The store, as on SQLite (migrations/sqlite/V1__initial.sql). Times are ms since the Unix epoch; "user" is quoted
-- (a reserved word here).
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TIMESTAMPTZ NOT NULL DEFAULT now(),
    admin BOOLEAN NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS logins (token_hash TEXT PRIMARY KEY NOT NULL, "user" TEXT NOT NULL, created BIGINT NOT NULL,
    last_seen BIGINT NOT NULL, expires BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS logins_user ON logins ("user");
CREATE TABLE IF NOT EXISTS winrm_sessions (key TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, target TEXT NOT NULL,
    shell TEXT NOT NULL, sealed_password BYTEA, updated BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time BIGINT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
