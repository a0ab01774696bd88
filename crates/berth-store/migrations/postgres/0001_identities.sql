-- Accounts, IAM identities, policies and credentials (the shape of migrations/sqlite
-- 0001 with 0005's sealed secrets). IAM names are unique regardless of case, and keep the
-- case they were created with: the columns that SQLite declares COLLATE NOCASE use the
-- case-insensitive ICU collation `berth_nocase` here. Times are seconds since the epoch
-- (BIGINT). Secret columns hold sealed values (src/sealer.rs), never secrets in clear.
CREATE COLLATION IF NOT EXISTS berth_nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    alias      TEXT UNIQUE,
    created_at BIGINT NOT NULL
);

-- Users, groups and roles: kind is 'user', 'group' or 'role'.
CREATE TABLE entities (
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    kind             TEXT NOT NULL,
    name             TEXT COLLATE berth_nocase NOT NULL,
    path             TEXT NOT NULL,
    unique_id        TEXT NOT NULL UNIQUE,
    created_at       BIGINT NOT NULL,
    trust_policy     TEXT,
    description      TEXT,
    max_session_secs BIGINT,
    boundary_arn     TEXT,
    PRIMARY KEY (account_id, kind, name)
);
CREATE INDEX entities_by_boundary ON entities (boundary_arn) WHERE boundary_arn IS NOT NULL;

CREATE TABLE group_members (
    account_id TEXT NOT NULL,
    group_name TEXT COLLATE berth_nocase NOT NULL,
    user_name  TEXT COLLATE berth_nocase NOT NULL,
    PRIMARY KEY (account_id, group_name, user_name)
);
CREATE INDEX group_members_by_user ON group_members (account_id, user_name);

CREATE TABLE inline_policies (
    account_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    owner_name  TEXT COLLATE berth_nocase NOT NULL,
    policy_name TEXT COLLATE berth_nocase NOT NULL,
    document    TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, owner_name, policy_name)
);

CREATE TABLE managed_policies (
    account_id      TEXT NOT NULL,
    name            TEXT COLLATE berth_nocase NOT NULL,
    path            TEXT NOT NULL,
    policy_id       TEXT NOT NULL UNIQUE,
    default_version TEXT NOT NULL,
    next_version    BIGINT NOT NULL,
    description     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);
-- A policy found by its ARN (attachments and boundaries name policies by ARN), compared
-- byte for byte under the database's default collation as the ARN columns are.
CREATE INDEX managed_policies_by_arn ON managed_policies
    ((('arn:aws:iam::' || account_id || ':policy' || path || name) COLLATE "default"));

CREATE TABLE policy_versions (
    account_id  TEXT NOT NULL,
    policy_name TEXT COLLATE berth_nocase NOT NULL,
    version_id  TEXT NOT NULL,
    document    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, policy_name, version_id)
);

CREATE TABLE attachments (
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    owner_name TEXT COLLATE berth_nocase NOT NULL,
    policy_arn TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, owner_name, policy_arn)
);
CREATE INDEX attachments_by_policy ON attachments (policy_arn);

-- Tags on users, roles and managed policies (kind 'policy').
CREATE TABLE tags (
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    owner_name TEXT COLLATE berth_nocase NOT NULL,
    key        TEXT COLLATE berth_nocase NOT NULL,
    value      TEXT NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind, owner_name, key)
);

-- Long-term keys; user_name NULL = the account's root user. secret is sealed.
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    user_name     TEXT COLLATE berth_nocase,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX access_keys_by_user ON access_keys (account_id, user_name);

-- Temporary credentials from STS; claims is the session's description (JSON, owned by
-- the server). secret is sealed.
CREATE TABLE sessions (
    access_key_id TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,
    token         TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    claims        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
