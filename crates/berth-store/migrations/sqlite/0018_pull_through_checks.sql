-- When the pull-through cache last checked a cached tag against its upstream registry
-- (milliseconds since the epoch; set back for a check that failed, so that it is tried
-- again sooner). Shared by every node: a tag is checked once per interval however many
-- nodes serve it and however often they restart.
CREATE TABLE pull_through_checks (
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (registry, repository, tag)
);
