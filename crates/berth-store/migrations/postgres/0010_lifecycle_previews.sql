-- Lifecycle policy previews (StartLifecyclePolicyPreview), kept so that any node answers
-- GetLifecyclePolicyPreview: one per repository (a new one replaces it), with the
-- images the previewed policy expires. Deleting the repository deletes its preview.
CREATE TABLE lifecycle_previews (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    policy     TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, repository),
    FOREIGN KEY (account_id, repository) REFERENCES repositories (account_id, name) ON DELETE CASCADE
);

CREATE TABLE lifecycle_preview_results (
    account_id    TEXT NOT NULL,
    repository    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    -- The image's tags, one per line (a tag has no line break); NULL when untagged.
    tags          TEXT,
    pushed_at     BIGINT NOT NULL,
    rule_priority BIGINT NOT NULL,
    PRIMARY KEY (account_id, repository, digest),
    FOREIGN KEY (account_id, repository) REFERENCES lifecycle_previews (account_id, repository) ON DELETE CASCADE
);
