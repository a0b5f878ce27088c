-- A step whose JavaScript transform returns null is skipped on purpose, and its result says so
-- (`skipped`), neither a success nor a failure.
--
-- NOT VALID: every existing row passes the new check (it only allows one more value), so the
-- table is not scanned under its lock; new rows are checked as always.
ALTER TABLE step_results DROP CONSTRAINT step_results_outcome_check,
    ADD CONSTRAINT step_results_outcome_check
        CHECK (outcome IN ('succeeded', 'failed', 'skipped')) NOT VALID;
