-- Registry times keep milliseconds (ECR answers with fractional epoch seconds): every
-- time stored in whole seconds until now becomes milliseconds since the epoch.
UPDATE repositories SET created_at = created_at * 1000,
    lifecycle_updated = lifecycle_updated * 1000;
UPDATE images SET pushed_at = pushed_at * 1000, last_pull = last_pull * 1000;
UPDATE repository_blobs SET added_at = added_at * 1000;
UPDATE uploads SET created_at = created_at * 1000, updated_at = updated_at * 1000;
