-- Up Migration
-- The PostgreSQL registry (issue 16), in its own schema. Times the server decides (assignment, audit) come from its
-- injected clock; expiry columns are epoch milliseconds, compared with the same clock.

-- What `mqtt-bootstrap registry configure` sets: 'attestation' ({"groupKeyFile", "identity"} or "none"), 'connect'
-- ({"host", "qos", "cleanSession"}), 'claims' ("allow-list" or "any-signed").
CREATE TABLE mqtt_bootstrap.settings (
  name text PRIMARY KEY,
  value jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The identities allowed to claim (the allow-list; with "any-signed", also each identity that claimed with a valid
-- signature), and those revoked.
CREATE TABLE mqtt_bootstrap.identities (
  identity text PRIMARY KEY CHECK (length(identity) BETWEEN 1 AND 256),
  allowed_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

-- The pool: triplets imported from the cloud's CSV. `identity` is the one it was handed to, NULL while free. UNIQUE
-- makes it impossible for an identity to hold two; one column makes it impossible for a triplet to have two holders.
CREATE TABLE mqtt_bootstrap.triplets (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  product_key text NOT NULL,
  device_name text NOT NULL,
  device_secret text NOT NULL,
  identity text UNIQUE REFERENCES mqtt_bootstrap.identities (identity),
  assigned_at timestamptz,
  imported_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (product_key, device_name),
  CHECK ((identity IS NULL) = (assigned_at IS NULL))
);
-- The free ones, in import order: what an assignment takes from.
CREATE INDEX triplets_free ON mqtt_bootstrap.triplets (id) WHERE identity IS NULL;

-- The audit: every claim answered, by which server process.
CREATE TABLE mqtt_bootstrap.claims (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL,
  identity text,
  peer text,
  code text NOT NULL,
  status integer,
  server text NOT NULL,
  triplet_id bigint REFERENCES mqtt_bootstrap.triplets (id)
);
CREATE INDEX claims_identity ON mqtt_bootstrap.claims (identity, at);

-- Signed claims' nonces (NonceStore), shared by every server process: a replay to another process is caught.
CREATE TABLE mqtt_bootstrap.nonces (
  key_id text NOT NULL,
  nonce text NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_expiry ON mqtt_bootstrap.nonces (expires_at);

-- Re-claims (ClaimLog): each identity's last answered verified claim.
CREATE TABLE mqtt_bootstrap.served (
  identity text PRIMARY KEY,
  time_ms bigint NOT NULL,
  digest text NOT NULL
);

-- The abuse limiter's counters ('a:' + address key, 'i:' + identity), shared by every server process.
CREATE TABLE mqtt_bootstrap.limit_counters (
  key text PRIMARY KEY,
  window_start bigint NOT NULL,
  failures integer NOT NULL,
  blocked_until bigint NOT NULL,
  last_block_ms bigint NOT NULL
);

-- Down Migration
DROP TABLE mqtt_bootstrap.limit_counters, mqtt_bootstrap.served, mqtt_bootstrap.nonces, mqtt_bootstrap.claims,
  mqtt_bootstrap.triplets, mqtt_bootstrap.identities, mqtt_bootstrap.settings;
