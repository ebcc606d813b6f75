//! A local, spec-faithful twin of the Hetzner Cloud API, Talos nodes and the Kubernetes API.
