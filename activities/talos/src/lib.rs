//! Talos machine API client (maintenance mode and mTLS) over tonic.
