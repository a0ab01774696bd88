-- Secrets at rest: secret access keys (access_keys.secret, sessions.secret) and server
-- secrets (server_secrets.value) are stored sealed with a key kept outside the database
-- (XChaCha20-Poly1305, each value bound to its table and row; see src/sealer.rs). The
-- key itself is never stored: this one row holds a known text sealed with it, which
-- tells the right key from a wrong one. No row: the secrets are still in clear (a
-- database made before this version); the first open with a key seals them all, in one
-- transaction with adding the row. clear_remnants is 1 while the file (free pages) or its
-- write-ahead log may still hold the secrets as they were before sealing: until a VACUUM
-- and a truncating checkpoint have run (retried on every open until they succeed).
CREATE TABLE secrets_key_check (
    only_row       INTEGER PRIMARY KEY NOT NULL CHECK (only_row = 1),
    sealed         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    clear_remnants INTEGER NOT NULL DEFAULT 0
);
