-- Shared sessions (issue 20): a session of owner's shared with grantee as observer or peer. Kept in the store so
-- that every relay (the owner's home serves the joins) and a relay taking the owner over see the same invitations.
CREATE TABLE IF NOT EXISTS session_shares (
    owner TEXT NOT NULL,
    session_id BIGINT NOT NULL,
    grantee TEXT NOT NULL,
    role TEXT NOT NULL,
    granted BIGINT NOT NULL,
    PRIMARY KEY (owner, session_id, grantee)
);
CREATE INDEX IF NOT EXISTS session_shares_grantee ON session_shares (grantee);
