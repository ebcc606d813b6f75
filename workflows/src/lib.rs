//! Cluster spec and the hk8s workflows: create-cluster, destroy-cluster.
