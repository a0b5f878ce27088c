-- Actions: a `compensating` status (the last attempt failed; compensations of succeeded steps
-- run before the event is dead-lettered), and operator pauses of a provider's processing.
ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check CHECK (status IN
    ('pending', 'processing', 'retry_scheduled', 'completed', 'dead_letter', 'compensating'));

-- Compensating events are due work too: the workers' index must cover them.
DROP INDEX events_due;
CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating');

-- A row here pauses the provider in every process until it is deleted (resume).
CREATE TABLE provider_pauses (
    provider  text        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    reason    text
);
