-- `psgate drain`: asks a relay, through the store, to hand its sessions over and stop.
ALTER TABLE relays ADD COLUMN IF NOT EXISTS drain BOOLEAN NOT NULL DEFAULT false;
