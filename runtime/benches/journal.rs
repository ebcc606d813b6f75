//! Journal benchmark (being written).
fn main() {}
