-- Nodes sharing this database without Redis: who is alive (a heartbeat on
-- the database's clock) and the large events of their bus (LISTEN/NOTIFY
-- carries at most 8,000 bytes; a larger event is a row its notification names).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    -- What tells the process holding the id apart (host and address).
    holder TEXT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bus_payloads (
    id BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bus_payloads_created_at ON bus_payloads (created_at);
