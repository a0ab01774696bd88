-- Leases on background jobs: the node whose lease is unexpired runs the job, so exactly
-- one node of a deployment runs each job at a time. Times are milliseconds since the
-- epoch. A released lease keeps its row (expires_at set to 0), so `last_run_at` carries
-- the job's schedule over to whichever node takes it next.
CREATE TABLE leases (
    job         TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_run_at INTEGER
);
