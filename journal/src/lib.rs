//! Durable SQLite journal of workflow runs, steps, attempts and leases.
