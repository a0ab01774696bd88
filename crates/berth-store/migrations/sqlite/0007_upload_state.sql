-- Upload sessions any node can continue: the blob backend's state of a session (bytes
-- received, the object store's multipart upload and its parts, the resumable SHA-256
-- state) is kept with the session, opaque to the store, and replaced only by a writer
-- that read the current version (compare and set on state_version).
ALTER TABLE uploads ADD COLUMN state BLOB;
ALTER TABLE uploads ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0;
