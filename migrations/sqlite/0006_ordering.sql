-- Ordered delivery per key (see the PostgreSQL migration 0007 and docs/design.md). SQLite has
-- one writer, so a line's position is taken in the insert's own transaction, in commit order.
CREATE TABLE order_lines (
    route    TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    next_pos INTEGER NOT NULL,
    waiting  INTEGER NOT NULL,
    PRIMARY KEY (route, key)
) WITHOUT ROWID;

CREATE TABLE event_order (
    event_id BLOB    NOT NULL REFERENCES deliveries (event_id),
    route    TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    block    INTEGER NOT NULL,
    pos      INTEGER,
    PRIMARY KEY (event_id, route)
) WITHOUT ROWID;
CREATE UNIQUE INDEX event_order_line ON event_order (route, key, pos) WHERE pos IS NOT NULL;

ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating') AND held = 0;
