-- Schema 6: cluster files (secrets bundle, talosconfig, kubeconfig) every runner of a shared
-- journal can reach. The journal stores them sealed by the CLI with the operator's key
-- (HK8S_FILES_KEY): `sealed` is base64 of nonce and ciphertext, never the plaintext.
CREATE TABLE cluster_files (
    cluster    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    sealed     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (cluster, name)
) WITHOUT ROWID;
