//! Idempotent Hetzner Cloud activities behind one facade over the hcloud crate.
