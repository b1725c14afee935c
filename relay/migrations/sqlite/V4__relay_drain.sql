-- `psgate drain`: asks a relay, through the store, to hand its sessions over and stop.
ALTER TABLE relays ADD COLUMN drain INTEGER NOT NULL DEFAULT 0;
