-- Configuration as data: providers, routes and named destinations written through the admin
-- API. Each change writes the whole configuration as a new version (a few kilobytes), so a
-- change is one insert (atomic on both engines), the history keeps every before and after, and
-- two writers racing for the same version cannot both win (the primary key). Provider secrets
-- in `document` are AES-256-GCM ciphertexts with their key id, never plaintext.
CREATE TABLE config_versions (
    version  bigint      PRIMARY KEY,
    document text        NOT NULL,
    actor    text        NOT NULL,
    at       timestamptz NOT NULL,
    summary  text        NOT NULL
);

-- Every process LISTENs on `hookd_config` and applies the new version at once; a notification
-- missed while its connection was down is caught by the version check each process also polls.
CREATE FUNCTION hookd_config_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookd_config', NEW.version::text);
    RETURN NEW;
END $$;
CREATE TRIGGER config_versions_notify AFTER INSERT ON config_versions
    FOR EACH ROW EXECUTE FUNCTION hookd_config_notify();
