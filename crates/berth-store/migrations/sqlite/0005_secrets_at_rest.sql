-- Secrets at rest: secret access keys (access_keys.secret, sessions.secret) and server
-- secrets (server_secrets.value) are stored sealed with a key kept outside the database
-- (XChaCha20-Poly1305, each value bound to its table and row; see src/sealer.rs). The
-- key itself is never stored: this one row holds a known text sealed with it, which
-- tells the right key from a wrong one. No row: the secrets are still in clear (a
-- database made before this version); the first open with a key seals them all, in one
-- transaction with adding the row.
CREATE TABLE secrets_key_check (
    only_row   INTEGER PRIMARY KEY NOT NULL CHECK (only_row = 1),
    sealed     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
