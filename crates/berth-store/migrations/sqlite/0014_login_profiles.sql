-- IAM users' console passwords (login profiles): an argon2id hash (PHC string), never
-- the password; and each account's password policy (IAM's PasswordPolicy, as JSON).
CREATE TABLE login_profiles (
    account_id     TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    reset_required INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_name)
);
CREATE TABLE password_policies (
    account_id TEXT PRIMARY KEY NOT NULL,
    policy     TEXT NOT NULL
);
