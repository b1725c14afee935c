-- The audit trail (issue 20): one chain of records written by every relay (see relay/src/audit.rs). The columns
-- before body are copies of its fields, for searching; body is the record's JSON as its MAC covers it. The older
-- table `audit` (admin actions, before the chain) is kept as it was and no longer written.
CREATE TABLE IF NOT EXISTS audit_records (
    seq BIGINT PRIMARY KEY NOT NULL,
    relay TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    owner TEXT,
    session BIGINT,
    computer TEXT,
    body TEXT NOT NULL,
    prev TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_at ON audit_records (at);
CREATE INDEX IF NOT EXISTS audit_records_actor ON audit_records (actor, at);
CREATE INDEX IF NOT EXISTS audit_records_computer ON audit_records (computer, at);
CREATE INDEX IF NOT EXISTS audit_records_session ON audit_records (owner, session, seq);
