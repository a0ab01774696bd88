-- Pages of a repository's images, newest first (DescribeImages, the console), read by
-- this index instead of sorting every image of the repository.
CREATE INDEX images_by_push ON images (account_id, repository, pushed_at DESC, digest COLLATE "C");

-- What a repository holds, added up from an index alone (the console's repository list).
CREATE INDEX repository_blobs_usage ON repository_blobs (account_id, repository, size);
