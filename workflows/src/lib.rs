//! The hk8s workflows and the cluster spec they run from.
//!
//! - [`spec`]: the cluster YAML, parsed and validated before any API call.

pub mod spec;
