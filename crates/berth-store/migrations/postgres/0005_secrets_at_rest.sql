-- Secrets at rest (as on SQLite, see src/sealer.rs): secret access keys, session secrets
-- and server secrets are stored sealed with a key kept outside the database. The key is
-- never stored: this one row holds a known text sealed with it, which tells the right
-- key from a wrong one. A PostgreSQL database never held secrets in clear.
CREATE TABLE secrets_key_check (
    only_row   INTEGER PRIMARY KEY CHECK (only_row = 1),
    sealed     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
