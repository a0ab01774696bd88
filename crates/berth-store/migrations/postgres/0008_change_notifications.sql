-- Nodes cache what authorization reads (credentials, identities and their policies,
-- repositories with their policies and tags, registry policies). A write to any of it,
-- by any node, by `berth migrate` or by hand, notifies channel `berth_changes` with the
-- table's name when its transaction commits; every node listens and drops its caches, so
-- a change takes effect everywhere within the notification's delay, not the caches' TTL.
-- Statement-level triggers: one notification per statement, and PostgreSQL folds equal
-- notifications of one transaction into one. Writes that authorization never reads
-- (images, image tags, blobs, uploads, sessions, leases) notify nothing.
CREATE FUNCTION berth_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('berth_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'entities', 'group_members', 'inline_policies',
        'managed_policies', 'policy_versions', 'attachments', 'tags', 'access_keys',
        'repositories', 'registry_policies']
    LOOP
        EXECUTE format(
            'CREATE TRIGGER berth_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I
             FOR EACH STATEMENT EXECUTE FUNCTION berth_notify_change()', t);
    END LOOP;
END
$$;
