-- no-transaction
-- The lean write path (see the PostgreSQL migration): an event's immutable part stays in
-- `events`; its delivery state moves to `deliveries`, one narrow row per event, so claims,
-- lease renewals and outcomes rewrite a small row and never the event with its body.
--
-- The moved columns carry a CHECK constraint and indexes, which SQLite cannot drop in place, so
-- `events` is rebuilt the documented way (https://www.sqlite.org/lang_altertable.html#otheralter),
-- as in 0002: foreign keys off (only possible outside a transaction, hence `no-transaction`),
-- then one transaction, so a crash leaves the old schema or the new one. (Unlike 0002, a run
-- again after the commit but before sqlx's bookkeeping row fails on the copy of the moved
-- columns, which are gone by then; recording version 5 as applied finishes it.)
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

-- `provider` and `received_at` are copies of the event's (they never change).
CREATE TABLE deliveries (
    event_id        BLOB    PRIMARY KEY REFERENCES events (id),
    provider        TEXT    NOT NULL,
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
    replays         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Every event's state, as it is now.
INSERT INTO deliveries (event_id, provider, received_at, status, attempts,
                                  next_attempt_at, lease_owner, last_error, updated_at, replays)
SELECT id, provider, received_at, status, attempts, next_attempt_at, lease_owner, last_error,
       updated_at, replays
FROM events;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating');
CREATE INDEX deliveries_status_received ON deliveries (status, received_at);

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
    traceparent     TEXT,
    body_purged_at  INTEGER,
    body_digest     TEXT,
    UNIQUE (provider, idempotency_key)
) WITHOUT ROWID;

INSERT INTO events_rebuild (id, provider, idempotency_key, event_type, content_type, headers, body,
                            received_at, traceparent, body_purged_at, body_digest)
SELECT id, provider, idempotency_key, event_type, content_type, headers, body,
       received_at, traceparent, body_purged_at, body_digest
FROM events;

DROP TABLE events;
ALTER TABLE events_rebuild RENAME TO events;

CREATE UNIQUE INDEX events_provider_body_digest ON events (provider, body_digest)
    WHERE body_digest IS NOT NULL;

-- The body stays immutable except for the one retention purge of a finished event.
CREATE TRIGGER events_body_immutable BEFORE UPDATE OF body ON events
    WHEN OLD.body IS NOT NEW.body
        AND NOT (NEW.body = X'' AND OLD.body_purged_at IS NULL AND NEW.body_purged_at IS NOT NULL
                 AND (SELECT d.status FROM deliveries d WHERE d.event_id = OLD.id)
                     IN ('completed', 'dead_letter'))
BEGIN
    SELECT RAISE(ABORT, 'events.body is immutable');
END;
CREATE TRIGGER events_purge_final BEFORE UPDATE OF body_purged_at ON events
    WHEN OLD.body_purged_at IS NOT NULL AND NEW.body_purged_at IS NOT OLD.body_purged_at
BEGIN
    SELECT RAISE(ABORT, 'events.body_purged_at cannot change once set');
END;

COMMIT;
PRAGMA foreign_keys = ON;
