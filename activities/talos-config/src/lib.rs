//! Talos secrets bundles, machine configs and talosconfig files, generated in Rust.
