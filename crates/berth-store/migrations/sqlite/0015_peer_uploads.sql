-- The upload sessions this deployment has open at peers (other deployments), by what
-- they upload: a delivery tried again continues its blob's session from the offset the
-- peer kept instead of sending the blob from its first byte, also after this deployment
-- restarts or another node takes the replication job over.
CREATE TABLE peer_uploads (
    peer         TEXT NOT NULL,
    dest_account TEXT NOT NULL,
    dest_region  TEXT NOT NULL,
    repository   TEXT NOT NULL,
    digest       TEXT NOT NULL,
    session      TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (peer, dest_account, dest_region, repository, digest)
);
