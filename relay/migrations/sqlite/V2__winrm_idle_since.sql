-- When a kept WinRM session became idle (ms since the Unix epoch; NULL: not idle).
ALTER TABLE winrm_sessions ADD COLUMN idle_since INTEGER NULL;
