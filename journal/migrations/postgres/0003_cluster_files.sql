-- Schema 3 on PostgreSQL (SQLite schema 6): cluster files (secrets bundle, talosconfig,
-- kubeconfig) every runner can reach, sealed by the CLI with the operator's key
-- (HK8S_FILES_KEY): `sealed` is base64 of nonce and ciphertext, never the plaintext.
CREATE TABLE cluster_files (
    cluster    TEXT   NOT NULL COLLATE "C",
    name       TEXT   NOT NULL COLLATE "C",
    sealed     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cluster, name)
);
