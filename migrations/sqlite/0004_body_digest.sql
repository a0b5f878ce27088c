-- Replays of schemes that sign only the body (GitHub, Shopify): a captured request sent again
-- with a new delivery id carries the same body. New events of those schemes store the body's
-- SHA-256 here; it is unique per provider, and cleared once older than the replay window
-- (HOOKD_REPLAY_WINDOW_HOURS) when the same body arrives again. Existing rows keep NULL: they
-- are not compared, as before.
ALTER TABLE events ADD COLUMN body_digest TEXT;
CREATE UNIQUE INDEX events_provider_body_digest ON events (provider, body_digest)
    WHERE body_digest IS NOT NULL;
