-- One database per PAS store, owned by the compose file's POSTGRES_USER (pas), created on the
-- first start of an empty data volume. The DSNs in deploy/secrets/pas.env name them.
CREATE DATABASE registry;
CREATE DATABASE router;
CREATE DATABASE runner;
CREATE DATABASE analytics;
