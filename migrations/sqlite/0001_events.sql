-- Same model as the PostgreSQL schema; times are Unix milliseconds, ids 16-byte UUID blobs.
CREATE TABLE events (
    id              BLOB    PRIMARY KEY,
    provider        TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    content_type    TEXT,
    headers         TEXT    NOT NULL DEFAULT '{}',
    body            BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'retry_scheduled', 'completed', 'dead_letter')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Next attempt for pending/retry_scheduled; lease expiry for processing.
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    traceparent     TEXT,
    UNIQUE (provider, idempotency_key)
) WITHOUT ROWID;

CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled');
CREATE INDEX events_status_received ON events (status, received_at);

CREATE TRIGGER events_body_immutable BEFORE UPDATE OF body ON events
    WHEN OLD.body IS NOT NEW.body
BEGIN
    SELECT RAISE(ABORT, 'events.body is immutable');
END;

CREATE TABLE event_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BLOB    NOT NULL REFERENCES events (id),
    from_status TEXT,
    to_status   TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    detail      TEXT
);
CREATE INDEX event_transitions_event ON event_transitions (event_id, id);

CREATE TRIGGER event_transitions_no_update BEFORE UPDATE ON event_transitions
BEGIN
    SELECT RAISE(ABORT, 'event_transitions is append-only');
END;
CREATE TRIGGER event_transitions_no_delete BEFORE DELETE ON event_transitions
BEGIN
    SELECT RAISE(ABORT, 'event_transitions is append-only');
END;

CREATE TABLE step_results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BLOB    NOT NULL REFERENCES events (id),
    step        TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX step_results_event ON step_results (event_id, id);
