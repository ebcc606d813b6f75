//! Durable workflow executor: journaled steps, replay, retries, durable sleep, leases, cancellation.
