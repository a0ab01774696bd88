-- The registry (the shape of migrations/sqlite 0002 with 0003's typed settings, 0004's
-- millisecond times and 0007's upload state): repositories with their settings and
-- policies, images (manifests kept verbatim), tags, what each manifest references, the
-- blobs each repository holds, upload sessions, registry policies, server secrets.
-- Times are milliseconds since the epoch (BIGINT).
CREATE TABLE repositories (
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    name                  TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    tag_mutability        TEXT NOT NULL,
    -- The exclusion filters' WILDCARD patterns, one per line.
    mutability_exclusions TEXT,
    scan_on_push          BOOLEAN NOT NULL,
    encryption_type       TEXT NOT NULL DEFAULT 'AES256',
    kms_key               TEXT,
    policy                TEXT,
    lifecycle_policy      TEXT,
    lifecycle_updated     BIGINT,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE registry_policies (
    account_id TEXT PRIMARY KEY,
    policy     TEXT NOT NULL
);

CREATE TABLE images (
    account_id    TEXT NOT NULL,
    repository    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    manifest      BYTEA NOT NULL,
    size          BIGINT NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    pushed_at     BIGINT NOT NULL,
    last_pull     BIGINT,
    PRIMARY KEY (account_id, repository, digest),
    FOREIGN KEY (account_id, repository) REFERENCES repositories (account_id, name) ON DELETE CASCADE
);
CREATE INDEX images_by_subject ON images (account_id, repository, subject) WHERE subject IS NOT NULL;

CREATE TABLE image_tags (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    PRIMARY KEY (account_id, repository, tag),
    FOREIGN KEY (account_id, repository, digest) REFERENCES images (account_id, repository, digest) ON DELETE CASCADE
);
CREATE INDEX image_tags_by_digest ON image_tags (account_id, repository, digest);

-- What a manifest references: kind 'blob' (config, layers) or 'manifest' (index children).
CREATE TABLE image_refs (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    child      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    PRIMARY KEY (account_id, repository, digest, child),
    FOREIGN KEY (account_id, repository, digest) REFERENCES images (account_id, repository, digest) ON DELETE CASCADE
);
CREATE INDEX image_refs_by_child ON image_refs (account_id, repository, child);

-- Blobs a repository holds (uploaded to it or mounted into it).
CREATE TABLE repository_blobs (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, repository, digest),
    FOREIGN KEY (account_id, repository) REFERENCES repositories (account_id, name) ON DELETE CASCADE
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

-- Upload sessions; state is the blob backend's (opaque here), replaced only by a writer
-- that read state_version (compare and set).
CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    repository    TEXT NOT NULL,
    principal     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    state         BYTEA,
    state_version BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (account_id, repository) REFERENCES repositories (account_id, name) ON DELETE CASCADE
);
CREATE INDEX uploads_by_age ON uploads (updated_at);
-- A repository's sessions, for the cascade when it is deleted.
CREATE INDEX uploads_by_repository ON uploads (account_id, repository);

-- Server secrets shared by every node (the key registry passwords are signed with),
-- sealed.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
