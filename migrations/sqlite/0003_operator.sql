-- Operator surface: replays, payload retention, the audit log, background jobs and console
-- sessions (see the PostgreSQL migration for the reasons). Times are Unix milliseconds.
ALTER TABLE events ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
ALTER TABLE step_results ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN body_purged_at INTEGER;

-- The body stays immutable except for the one retention purge of a finished event.
DROP TRIGGER events_body_immutable;
CREATE TRIGGER events_body_immutable BEFORE UPDATE OF body ON events
    WHEN OLD.body IS NOT NEW.body
        AND NOT (NEW.body = X'' AND OLD.body_purged_at IS NULL AND NEW.body_purged_at IS NOT NULL
                 AND OLD.status IN ('completed', 'dead_letter'))
BEGIN
    SELECT RAISE(ABORT, 'events.body is immutable');
END;
CREATE TRIGGER events_purge_final BEFORE UPDATE OF body_purged_at ON events
    WHEN OLD.body_purged_at IS NOT NULL AND NEW.body_purged_at IS NOT OLD.body_purged_at
BEGIN
    SELECT RAISE(ABORT, 'events.body_purged_at cannot change once set');
END;

CREATE INDEX event_transitions_at ON event_transitions (at);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT,
    status INTEGER NOT NULL,
    detail TEXT
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE admin_jobs (
    id               BLOB    PRIMARY KEY,
    kind             TEXT    NOT NULL,
    params           TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('running', 'completed', 'cancelled', 'failed')),
    total            INTEGER NOT NULL DEFAULT 0,
    processed        INTEGER NOT NULL DEFAULT 0,
    replayed         INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    error            TEXT
);

CREATE TABLE admin_sessions (
    id_digest  BLOB    PRIMARY KEY,
    token_name TEXT    NOT NULL,
    scope      TEXT    NOT NULL CHECK (scope IN ('read', 'operate')),
    csrf       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
