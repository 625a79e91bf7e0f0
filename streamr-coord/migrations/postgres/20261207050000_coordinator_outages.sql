-- When a coordinator process last noted itself up (one row; `previous_ms` is the note before
-- it), and the stretches in which none did: outages, recorded by the first process to note
-- after one. Receipts that an outage held back from an epoch's deadline are accepted, and the
-- epoch waits, until a grace period after the outage ended (see streamr_coord::outages).
CREATE TABLE coordinator_liveness (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    alive_ms BIGINT NOT NULL,
    previous_ms BIGINT NOT NULL
);
CREATE TABLE coordinator_outages (
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT NOT NULL,
    PRIMARY KEY (started_ms, ended_ms)
);
