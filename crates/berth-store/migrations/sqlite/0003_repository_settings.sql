-- Repository settings as typed columns instead of JSON text: the tag mutability exclusion
-- filters become their WILDCARD patterns, one per line (a pattern is [0-9a-zA-Z._*-]),
-- and the encryption configuration its type and KMS key.
ALTER TABLE repositories ADD COLUMN mutability_exclusions TEXT;
ALTER TABLE repositories ADD COLUMN encryption_type TEXT NOT NULL DEFAULT 'AES256';
ALTER TABLE repositories ADD COLUMN kms_key TEXT;

UPDATE repositories SET mutability_exclusions = (
    SELECT group_concat(json_extract(f.value, '$.filter'), char(10))
    FROM json_each(repositories.mutability_filters) AS f
    WHERE json_type(f.value, '$.filter') = 'text'
)
WHERE mutability_filters IS NOT NULL AND json_valid(mutability_filters)
  AND json_type(mutability_filters) = 'array';

UPDATE repositories SET
    encryption_type = CASE
        WHEN json_extract(encryption, '$.encryptionType') IN ('AES256', 'KMS', 'KMS_DSSE')
        THEN json_extract(encryption, '$.encryptionType') ELSE 'AES256' END,
    kms_key = CASE
        WHEN json_type(encryption, '$.kmsKey') = 'text'
        THEN json_extract(encryption, '$.kmsKey') END
WHERE json_valid(encryption) AND json_type(encryption) = 'object';

ALTER TABLE repositories DROP COLUMN mutability_filters;
ALTER TABLE repositories DROP COLUMN encryption;
