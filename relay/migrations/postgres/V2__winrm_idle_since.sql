-- When a kept WinRM session became idle (ms since the Unix epoch; NULL: not idle).
ALTER TABLE winrm_sessions ADD COLUMN IF NOT EXISTS idle_since BIGINT NULL;
