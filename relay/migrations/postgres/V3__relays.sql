-- The relays that share this store (issue 19): each registers itself and heartbeats; a kept WinRM session names the
-- relay holding it, so a surviving relay can take over the sessions of one that stopped or went silent.
CREATE TABLE IF NOT EXISTS relays (id TEXT PRIMARY KEY NOT NULL, address TEXT NOT NULL, started BIGINT NOT NULL,
    heartbeat BIGINT NOT NULL, stopped BIGINT NULL);
ALTER TABLE winrm_sessions ADD COLUMN IF NOT EXISTS relay TEXT NULL;
-- The session was open when its relay kept it (or stopped): whoever takes it over connects it again. A session its
-- user disconnected stays disconnected until they Connect.
ALTER TABLE winrm_sessions ADD COLUMN IF NOT EXISTS resume BOOLEAN NOT NULL DEFAULT false;
