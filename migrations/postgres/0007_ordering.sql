-- Ordered delivery per key (a route's `order_by`): each (route, key) is a line, and an event's
-- steps start only once it is first in every line it is in. See docs/design.md, "Ordered
-- delivery per key".
--
-- One row per line that has unfinished events: the next position to hand out and how many
-- events are in it. An insert takes its position by updating this row in its own transaction
-- (`ON CONFLICT DO UPDATE` locks it until the commit), so positions follow commit order.
CREATE TABLE order_lines (
    route    text    NOT NULL,
    key      text    NOT NULL,
    next_pos bigint  NOT NULL,
    waiting  integer NOT NULL,
    PRIMARY KEY (route, key)
);

-- An event's key on each ordered route it matched (kept for good: a replay joins the same
-- lines again), and its position while it is in the line (NULL once it has left: finished,
-- skipped, or dead-lettered on a route that releases).
CREATE TABLE event_order (
    event_id uuid    NOT NULL REFERENCES deliveries (event_id),
    route    text    NOT NULL,
    key      text    NOT NULL,
    -- `on_dead_letter = "block"`: a dead letter stays in the line.
    block    boolean NOT NULL,
    pos      bigint,
    PRIMARY KEY (event_id, route)
);
-- The lines, in order, with only the events still in them: the head of a line is one index
-- probe.
CREATE UNIQUE INDEX event_order_line ON event_order (route, key, pos) WHERE pos IS NOT NULL;

-- In how many of its lines an event has someone before it. Only events held by nobody are in
-- the index the claims walk, so a blocked line costs the claims nothing.
ALTER TABLE deliveries ADD COLUMN held integer NOT NULL DEFAULT 0;
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('pending', 'processing', 'retry_scheduled', 'compensating') AND held = 0;
