-- no-transaction
-- Actions: a `compensating` status and operator pauses (see the PostgreSQL migration).
--
-- SQLite cannot change a CHECK constraint in place, so `events` is rebuilt the documented way
-- (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off (only possible
-- outside a transaction, hence `no-transaction` above), then one transaction that creates the
-- new table, copies every row, swaps the tables and recreates indexes and triggers. Every
-- statement is safe to run again, so a crash between the commit and sqlx's bookkeeping row is
-- harmless.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

DROP TABLE IF EXISTS events_rebuild;
CREATE TABLE events_rebuild (
    id              BLOB    PRIMARY KEY,
    provider        TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    content_type    TEXT,
    headers         TEXT    NOT NULL DEFAULT '{}',
    body            BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'retry_scheduled', 'completed', 'dead_letter',
                          'compensating')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Next attempt for pending/retry_scheduled/compensating; lease expiry for processing.
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    traceparent     TEXT,
    UNIQUE (provider, idempotency_key)
) WITHOUT ROWID;

INSERT INTO events_rebuild (id, provider, idempotency_key, event_type, content_type, headers, body,
                            received_at, status, attempts, next_attempt_at, lease_owner, last_error,
                            updated_at, traceparent)
SELECT id, provider, idempotency_key, event_type, content_type, headers, body,
       received_at, status, attempts, next_attempt_at, lease_owner, last_error,
       updated_at, traceparent
FROM events;

DROP TABLE events;
ALTER TABLE events_rebuild RENAME TO events;

CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating');
CREATE INDEX events_status_received ON events (status, received_at);

CREATE TRIGGER events_body_immutable BEFORE UPDATE OF body ON events
    WHEN OLD.body IS NOT NEW.body
BEGIN
    SELECT RAISE(ABORT, 'events.body is immutable');
END;

CREATE TABLE IF NOT EXISTS provider_pauses (
    provider  TEXT    PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    reason    TEXT
);

COMMIT;
PRAGMA foreign_keys = ON;
