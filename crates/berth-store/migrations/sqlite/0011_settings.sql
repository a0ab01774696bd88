-- Settings of the deployment that are not secret and that every node must agree on,
-- recorded once (the first writer's value stays): `home-region`, the Region whose
-- repositories are stored under their bare names (see berth-store's RegistryKey).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
