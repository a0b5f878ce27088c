-- Events: one row per distinct webhook. The body is kept byte for byte and never changes.
CREATE TABLE events (
    id              uuid PRIMARY KEY,
    provider        text        NOT NULL,
    idempotency_key text        NOT NULL,
    event_type      text        NOT NULL,
    content_type    text,
    headers         jsonb       NOT NULL DEFAULT '{}',
    body            bytea       NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'retry_scheduled', 'completed', 'dead_letter')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- When the event is next due: for pending and retry_scheduled, the next attempt; for
    -- processing, the lease expiry (if the worker dies, that is when the event is retried).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    traceparent     text,
    CONSTRAINT events_provider_idempotency_key UNIQUE (provider, idempotency_key)
);

-- Only unfinished events are in the index the workers poll, so it stays small.
CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled');
CREATE INDEX events_status_received ON events (status, received_at);

CREATE FUNCTION hookd_body_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events.body is immutable';
END $$;
CREATE TRIGGER events_body_immutable BEFORE UPDATE OF body ON events
    FOR EACH ROW WHEN (OLD.body IS DISTINCT FROM NEW.body) EXECUTE FUNCTION hookd_body_immutable();

-- Lifecycle history, append-only.
CREATE TABLE event_transitions (
    id          bigserial PRIMARY KEY,
    event_id    uuid        NOT NULL REFERENCES events (id),
    from_status text,
    to_status   text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    detail      text
);
CREATE INDEX event_transitions_event ON event_transitions (event_id, id);

CREATE FUNCTION hookd_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER event_transitions_append_only BEFORE UPDATE OR DELETE ON event_transitions
    FOR EACH ROW EXECUTE FUNCTION hookd_append_only();

-- One row per step per attempt.
CREATE TABLE step_results (
    id          bigserial PRIMARY KEY,
    event_id    uuid        NOT NULL REFERENCES events (id),
    step        text        NOT NULL,
    attempt     integer     NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    error       text,
    duration_ms bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX step_results_event ON step_results (event_id, id);
