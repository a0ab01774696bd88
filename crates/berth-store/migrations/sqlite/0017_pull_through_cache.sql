-- Pull-through caching (ECR's CreatePullThroughCacheRule) and the credentials Berth signs
-- in to upstream registries with. A registry is keyed as elsewhere: its account, or
-- REGION:ACCOUNT outside the home Region (see berth-store's RegistryKey).

-- A registry's pull-through cache rules, each as the ECR wire JSON it was accepted in, by
-- its ecrRepositoryPrefix.
CREATE TABLE pull_through_rules (
    registry TEXT NOT NULL,
    prefix   TEXT NOT NULL,
    rule     TEXT NOT NULL,
    PRIMARY KEY (registry, prefix)
);

-- The credentials of upstream registries (berth upstream-credential put), named as AWS
-- Secrets Manager secrets are (ecr-pullthroughcache/...), each with the ARN rules name it
-- by. A credential replaced keeps its ARN and creation time. The secret is sealed with the
-- secrets key, bound to the ARN (never stored in clear).
CREATE TABLE upstream_credentials (
    registry   TEXT NOT NULL,
    name       TEXT NOT NULL,
    arn        TEXT NOT NULL UNIQUE,
    username   TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (registry, name)
);
