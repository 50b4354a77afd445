-- rollback-safe: yes
-- Release N+1 of the rollback drill (not compiled in: baked into the N+1 image as MIGRATIONS_DIR).
-- Additive only: release N ignores the new column, and its inserts leave it NULL.
ALTER TABLE executions ADD COLUMN labels JSONB;
CREATE INDEX executions_status_idx ON executions (status);
