-- PostgreSQL schema, numbered like migrations/sqlite: a version is one step of the
-- schema on either backend. 0001 and 0002 create the tables in the shape SQLite reaches
-- after 0003-0005 and 0007 (those steps converted SQLite data that PostgreSQL never held
-- in the older shape), so 0003, 0004 and 0007 have no PostgreSQL file.
--
-- Leases on background jobs: the node whose lease is unexpired runs the job, so exactly
-- one node of a deployment runs each job at a time. Times are milliseconds since the
-- epoch (BIGINT: PostgreSQL's INTEGER is 32 bits). A released lease keeps its row
-- (expires_at set to 0), so `last_run_at` carries the job's schedule over to whichever
-- node takes it next.
CREATE TABLE leases (
    job         TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_run_at BIGINT
);
