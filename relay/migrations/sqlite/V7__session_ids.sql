-- A session's id (its user's own numbering, as in a PowerShell console): a relay taking it over keeps it, so pages
-- and $variables at the prompt go on naming it as before.
ALTER TABLE winrm_sessions ADD COLUMN session_id INTEGER NULL;
ALTER TABLE pinned_sessions ADD COLUMN session_id INTEGER NULL;
