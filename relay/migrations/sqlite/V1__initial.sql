-- The store as psgate made it before versioned migrations. IF NOT EXISTS: a database from then already has these
-- (and its users.admin column, which the relay adds before the migrations where an older database lacks it).
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    admin INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS logins (token_hash TEXT PRIMARY KEY NOT NULL, user TEXT NOT NULL, created INTEGER NOT NULL,
    last_seen INTEGER NOT NULL, expires INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS logins_user ON logins (user);
CREATE TABLE IF NOT EXISTS winrm_sessions (key TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, target TEXT NOT NULL,
    shell TEXT NOT NULL, sealed_password BLOB, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
