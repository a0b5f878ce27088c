-- The lean write path: an event's immutable part (what was received) stays in `events`; what
-- changes while it is delivered (status, attempts, due time or lease, lease owner, last error,
-- replay generation) moves to `deliveries`, one narrow row per event. A claim, a lease renewal
-- and an outcome then rewrite a row of about 150 bytes and its three small indexes instead of
-- the ~1.7 KB event row and its four, and never touch `events` at all.
--
-- `provider` and `received_at` are copied from the event (they never change): claims skip
-- paused providers and the backlog finds its oldest waiting event from this table and its
-- indexes alone.
CREATE TABLE deliveries (
    event_id        uuid        PRIMARY KEY REFERENCES events (id),
    provider        text        NOT NULL,
    received_at     timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'retry_scheduled', 'completed', 'dead_letter',
                          'compensating')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- When the event is next due: for pending, retry_scheduled and compensating, the next
    -- attempt; for processing, the lease expiry (if the worker dies, that is when it is retried).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Operator replays (and redrives) of the event; step results record their generation.
    replays         integer     NOT NULL DEFAULT 0
);

-- Every event's state, as it is now.
INSERT INTO deliveries (event_id, provider, received_at, status, attempts, next_attempt_at,
                        lease_owner, last_error, updated_at, replays)
SELECT id, provider, received_at, status, attempts, next_attempt_at, lease_owner, last_error,
       updated_at, replays
FROM events;

-- Only unfinished events are in the index the workers poll, so it stays small.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating');
CREATE INDEX deliveries_status_received ON deliveries (status, received_at);

-- History and step results refer to the delivery, not the event: a foreign key check locks the
-- referenced row (FOR KEY SHARE, a write to its page), and the transitions and steps a worker
-- writes must not touch the event's page. Every delivery refers to its event, so history still
-- cannot refer to an event that does not exist.
ALTER TABLE event_transitions DROP CONSTRAINT event_transitions_event_id_fkey,
    ADD CONSTRAINT event_transitions_event_id_fkey
        FOREIGN KEY (event_id) REFERENCES deliveries (event_id);
ALTER TABLE step_results DROP CONSTRAINT step_results_event_id_fkey,
    ADD CONSTRAINT step_results_event_id_fkey
        FOREIGN KEY (event_id) REFERENCES deliveries (event_id);

-- History and step results are only ever read per event, in order: one index on
-- (event_id, id) serves every read, so it becomes the primary key and the index on `id` alone
-- (a second btree entry for every row the workers append) goes.
ALTER TABLE event_transitions DROP CONSTRAINT event_transitions_pkey,
    ADD CONSTRAINT event_transitions_pkey PRIMARY KEY (event_id, id);
DROP INDEX event_transitions_event;
ALTER TABLE step_results DROP CONSTRAINT step_results_pkey,
    ADD CONSTRAINT step_results_pkey PRIMARY KEY (event_id, id);
DROP INDEX step_results_event;

-- The body stays immutable except for the one retention purge of a finished event, whose
-- status is now in `deliveries`.
CREATE OR REPLACE FUNCTION hookd_body_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.body = ''::bytea AND OLD.body_purged_at IS NULL AND NEW.body_purged_at IS NOT NULL
       AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = OLD.id
                   AND d.status IN ('completed', 'dead_letter')) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events.body is immutable';
END $$;

-- The moved columns go, and with them the indexes `events_due` and `events_status_received`.
ALTER TABLE events
    DROP COLUMN status,
    DROP COLUMN attempts,
    DROP COLUMN next_attempt_at,
    DROP COLUMN lease_owner,
    DROP COLUMN last_error,
    DROP COLUMN updated_at,
    DROP COLUMN replays;
