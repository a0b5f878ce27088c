-- Keep webhook-sized rows (up to ~4 KB) inline and uncompressed. A row over ~2 KB otherwise
-- makes PostgreSQL try to compress its largest value on every insert; for a typical webhook
-- body (JSON with little repetition) pglz gives up after the attempt, and that wasted attempt
-- was the largest single cost of an insert in the profile (docs/performance.md). Larger
-- bodies are still compressed and moved out of line as before.
ALTER TABLE events SET (toast_tuple_target = 4080);
