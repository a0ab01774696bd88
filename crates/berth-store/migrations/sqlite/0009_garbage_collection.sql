-- Garbage collection (the protocol: berth-server's registry/gc.rs). `blobs` lists every
-- object of the blob store the registry knows, once per digest: the row a publication,
-- a mount and the collector's deletion of that object all lock. A repository's holding
-- of a blob carries `marked_at`, when the collector first saw it referenced by no image
-- of the repository (NULL: not a candidate); anything that tells a client the
-- repository holds the blob, or references it again, clears the mark.
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO blobs (digest, size, created_at)
    SELECT digest, MAX(size), MIN(added_at) FROM repository_blobs GROUP BY digest;
ALTER TABLE repository_blobs ADD COLUMN marked_at INTEGER;
CREATE INDEX repository_blobs_marked ON repository_blobs (marked_at) WHERE marked_at IS NOT NULL;
