-- PostgreSQL schema, numbered like migrations/sqlite so one version is one step of the
-- schema on either backend. 0001-0005 (identities, registry, settings, sealed secrets)
-- come with the rest of the PostgreSQL backend; the migrator applies any missing
-- version, so adding them later carries a database that has only this one forward.
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
