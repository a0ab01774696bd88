-- The registry: repositories with their settings and policies, images (manifests kept
-- verbatim), tags, what each manifest references, the blobs each repository holds,
-- upload sessions, registry policies.
CREATE TABLE repositories (
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    name               TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    tag_mutability     TEXT NOT NULL,
    mutability_filters TEXT,
    scan_on_push       INTEGER NOT NULL,
    encryption         TEXT NOT NULL,
    policy             TEXT,
    lifecycle_policy   TEXT,
    lifecycle_updated  INTEGER,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE registry_policies (
    account_id TEXT PRIMARY KEY NOT NULL,
    policy     TEXT NOT NULL
);

CREATE TABLE images (
    account_id    TEXT NOT NULL,
    repository    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    manifest      BLOB NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    pushed_at     INTEGER NOT NULL,
    last_pull     INTEGER,
    PRIMARY KEY (account_id, repository, digest)
);
CREATE INDEX images_by_subject ON images (account_id, repository, subject);

CREATE TABLE image_tags (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    PRIMARY KEY (account_id, repository, tag)
);
CREATE INDEX image_tags_by_digest ON image_tags (account_id, repository, digest);

-- What a manifest references: kind 'blob' (config, layers) or 'manifest' (index children).
CREATE TABLE image_refs (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    child      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    PRIMARY KEY (account_id, repository, digest, child)
);
CREATE INDEX image_refs_by_child ON image_refs (account_id, repository, child);

-- Blobs a repository holds (uploaded to it or mounted into it).
CREATE TABLE repository_blobs (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, repository, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

CREATE TABLE uploads (
    id         TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX uploads_by_age ON uploads (updated_at);

-- Server secrets shared by every node (the key registry passwords are signed with).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
