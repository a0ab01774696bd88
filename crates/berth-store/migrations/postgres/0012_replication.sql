-- Replication (ECR's PutReplicationConfiguration, repository creation templates) and its
-- outbox. A registry is keyed as elsewhere: its account, or REGION:ACCOUNT outside the home
-- Region (see berth-store's RegistryKey); repositories by their stored names.

-- A registry's replication configuration, as the ECR wire JSON it was accepted in.
CREATE TABLE replication_configurations (
    registry   TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A registry's repository creation templates, each as the ECR wire JSON it was accepted in.
CREATE TABLE creation_templates (
    registry TEXT NOT NULL,
    prefix   TEXT NOT NULL,
    template TEXT NOT NULL,
    PRIMARY KEY (registry, prefix)
);

-- The outbox: one row per thing a write must replicate to one destination, written in
-- the write's own transaction (a push, a tag removal, an image deletion), delivered by the
-- replication job and kept, settled, as the image's replication status. No foreign key:
-- a row outlives its source repository (a deletion still has to reach the destination).
CREATE TABLE replications (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   TEXT NOT NULL,
    repository   TEXT NOT NULL,
    digest       TEXT NOT NULL,
    -- push: the tag it moved (NULL: none); delete-tag: the tag removed
    tag          TEXT,
    -- 'push', 'delete-tag' or 'delete-image'
    action       TEXT NOT NULL,
    dest_account TEXT NOT NULL,
    dest_region  TEXT NOT NULL,
    -- 'IN_PROGRESS', 'COMPLETE' or 'FAILED'
    status       TEXT NOT NULL,
    failure_code TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    -- when the job may try it (again)
    next_at      BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    -- the replication backfill that asked for it, if one did
    backfill     TEXT
);
CREATE INDEX replications_due ON replications (next_at, id) WHERE status = 'IN_PROGRESS';
CREATE INDEX replications_of_image ON replications (account_id, repository, digest);

-- Replication backfills (StartReplicationBackfill): images pushed before a rule existed,
-- copied on request to one destination. Its replications are the outbox rows naming it.
CREATE TABLE replication_backfills (
    id           TEXT PRIMARY KEY,
    registry     TEXT NOT NULL,
    dest_account TEXT NOT NULL,
    dest_region  TEXT NOT NULL,
    -- 'PREPARING', 'IN_PROGRESS', 'COMPLETE', 'FAILED', 'STOPPING' or 'STOPPED'
    status       TEXT NOT NULL,
    failure_code TEXT,
    -- how many replications it made (NULL while preparing)
    total        BIGINT,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX replication_backfills_of_registry ON replication_backfills (registry, started_at);
CREATE INDEX replications_of_backfill ON replications (backfill, id) WHERE backfill IS NOT NULL;
