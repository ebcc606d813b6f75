//! Simulated Talos nodes for the twin: maintenance and mTLS machine API servers.
