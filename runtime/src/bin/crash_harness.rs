//! Crash harness (being written).
fn main() {}
