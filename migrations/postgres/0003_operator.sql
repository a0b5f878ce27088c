-- Operator surface: replays, payload retention, the audit log, background jobs and console
-- sessions.

-- Replays. `replays` counts the operator replays (and redrives) of an event; each step result
-- records the replay generation it belongs to, so a replay runs every step again while "a
-- succeeded step never runs twice" still holds within one generation.
ALTER TABLE events ADD COLUMN replays integer NOT NULL DEFAULT 0;
ALTER TABLE step_results ADD COLUMN generation integer NOT NULL DEFAULT 0;

-- Retention: the payload of a finished event may be purged once (set to empty, with the time
-- recorded); metadata, headers and history stay. The body trigger allows exactly that change.
ALTER TABLE events ADD COLUMN body_purged_at timestamptz;

CREATE OR REPLACE FUNCTION hookd_body_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.body = ''::bytea AND OLD.body_purged_at IS NULL AND NEW.body_purged_at IS NOT NULL
       AND OLD.status IN ('completed', 'dead_letter') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events.body is immutable';
END $$;

CREATE FUNCTION hookd_purge_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events.body_purged_at cannot change once set';
END $$;
CREATE TRIGGER events_purge_final BEFORE UPDATE OF body_purged_at ON events
    FOR EACH ROW WHEN (OLD.body_purged_at IS NOT NULL
                       AND NEW.body_purged_at IS DISTINCT FROM OLD.body_purged_at)
    EXECUTE FUNCTION hookd_purge_final();

-- The activity chart reads transitions by time. BRIN: transitions are appended in time order,
-- so the index stays a few pages and costs the hot path next to nothing.
CREATE INDEX event_transitions_at ON event_transitions USING brin (at);

-- Who did what, when: every operator action through the admin API or the console. Append-only.
CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    target  text,
    status  integer     NOT NULL,
    detail  text
);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hookd_append_only();

-- Bulk replays and redrives: progress is stored so that any API process can report it and
-- cancel it.
CREATE TABLE admin_jobs (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL,
    params           jsonb       NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('running', 'completed', 'cancelled', 'failed')),
    total            bigint      NOT NULL DEFAULT 0,
    processed        bigint      NOT NULL DEFAULT 0,
    replayed         bigint      NOT NULL DEFAULT 0,
    skipped          bigint      NOT NULL DEFAULT 0,
    cancel_requested boolean     NOT NULL DEFAULT false,
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    error            text
);

-- Console sessions: only a digest of the session id is stored.
CREATE TABLE admin_sessions (
    id_digest  bytea       PRIMARY KEY,
    token_name text        NOT NULL,
    scope      text        NOT NULL CHECK (scope IN ('read', 'operate')),
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
