-- Lifecycle policy previews (StartLifecyclePolicyPreview), kept so that any node answers
-- GetLifecyclePolicyPreview: one per repository (a new one replaces it), with the
-- images the previewed policy expires. A repository's delete removes its preview.
CREATE TABLE lifecycle_previews (
    account_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    policy     TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, repository)
);

CREATE TABLE lifecycle_preview_results (
    account_id    TEXT NOT NULL,
    repository    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    -- The image's tags, one per line (a tag has no line break); NULL when untagged.
    tags          TEXT,
    pushed_at     INTEGER NOT NULL,
    rule_priority INTEGER NOT NULL,
    PRIMARY KEY (account_id, repository, digest)
);
