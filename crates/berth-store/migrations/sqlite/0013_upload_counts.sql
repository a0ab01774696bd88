-- The caps on concurrent upload sessions count an account's and a repository's sessions
-- (PostgreSQL has had this index since 0002, for the cascade of a repository delete).
CREATE INDEX uploads_by_repository ON uploads (account_id, repository);
