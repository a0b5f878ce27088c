-- Configuration as data (see the PostgreSQL migration 0008): one row per version of the whole
-- configuration; provider secrets in `document` are ciphertexts. `at` is milliseconds since the
-- epoch, as every SQLite timestamp here.
CREATE TABLE config_versions (
    version  INTEGER PRIMARY KEY,
    document TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    summary  TEXT    NOT NULL
);
