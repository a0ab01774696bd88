-- Accounts, IAM identities, policies and credentials.
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    alias      TEXT UNIQUE,
    created_at INTEGER NOT NULL
);

-- Users, groups and roles: kind is 'user', 'group' or 'role'.
CREATE TABLE entities (
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL COLLATE NOCASE,
    path             TEXT NOT NULL,
    unique_id        TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    trust_policy     TEXT,
    description      TEXT,
    max_session_secs INTEGER,
    boundary_arn     TEXT,
    PRIMARY KEY (account_id, kind, name)
);

CREATE TABLE group_members (
    account_id TEXT NOT NULL,
    group_name TEXT NOT NULL COLLATE NOCASE,
    user_name  TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (account_id, group_name, user_name)
);
CREATE INDEX group_members_by_user ON group_members (account_id, user_name);

CREATE TABLE inline_policies (
    account_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    owner_name  TEXT NOT NULL COLLATE NOCASE,
    policy_name TEXT NOT NULL COLLATE NOCASE,
    document    TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, owner_name, policy_name)
);

CREATE TABLE managed_policies (
    account_id      TEXT NOT NULL,
    name            TEXT NOT NULL COLLATE NOCASE,
    path            TEXT NOT NULL,
    policy_id       TEXT NOT NULL UNIQUE,
    default_version TEXT NOT NULL,
    next_version    INTEGER NOT NULL,
    description     TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE policy_versions (
    account_id  TEXT NOT NULL,
    policy_name TEXT NOT NULL COLLATE NOCASE,
    version_id  TEXT NOT NULL,
    document    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, policy_name, version_id)
);

CREATE TABLE attachments (
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    owner_name TEXT NOT NULL COLLATE NOCASE,
    policy_arn TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, owner_name, policy_arn)
);
CREATE INDEX attachments_by_policy ON attachments (policy_arn);

-- Tags on users, roles and managed policies (kind 'policy').
CREATE TABLE tags (
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    owner_name TEXT NOT NULL COLLATE NOCASE,
    key        TEXT NOT NULL COLLATE NOCASE,
    value      TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, owner_name, key)
);

-- Long-term keys; user_name NULL = the account's root user.
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY NOT NULL,
    secret        TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    user_name     TEXT COLLATE NOCASE,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX access_keys_by_user ON access_keys (account_id, user_name);

-- Temporary credentials from STS; claims is the session's description (JSON, owned by the server).
CREATE TABLE sessions (
    access_key_id TEXT PRIMARY KEY NOT NULL,
    secret        TEXT NOT NULL,
    token         TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    claims        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
