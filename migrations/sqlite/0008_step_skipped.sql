-- A step whose JavaScript transform returns null is skipped on purpose, and its result says so
-- (`skipped`), neither a success nor a failure.
--
-- SQLite cannot change a CHECK constraint in place: `step_results` is rebuilt the documented way
-- (https://www.sqlite.org/lang_altertable.html#otheralter). No table refers to it, so foreign
-- keys can stay on, and the migration's transaction leaves the old table or the new one.
CREATE TABLE step_results_rebuild (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BLOB    NOT NULL REFERENCES events (id),
    step        TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'skipped')),
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    generation  INTEGER NOT NULL DEFAULT 0
);

INSERT INTO step_results_rebuild (id, event_id, step, attempt, outcome, error, duration_ms, at,
                                  generation)
SELECT id, event_id, step, attempt, outcome, error, duration_ms, at, generation
FROM step_results;

DROP TABLE step_results;
ALTER TABLE step_results_rebuild RENAME TO step_results;
CREATE INDEX step_results_event ON step_results (event_id, id);
