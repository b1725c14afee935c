-- Where each user is served (issue 19): one relay at a time holds a user's sessions and prompt, the user's home; any
-- relay accepts the user's connection and serves it through the home. A relay gone hands its users' homes to the
-- survivor that takes its sessions over, in the same claim.
CREATE TABLE IF NOT EXISTS homes (owner TEXT PRIMARY KEY NOT NULL, relay TEXT NOT NULL, since INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS homes_relay ON homes (relay);
