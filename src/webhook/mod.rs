//! The webhook: a worker that POSTs committed events after its cursor, advancing it on success.
//!
//! Never: retries without a bound, blocks the writer or a shard, logs a secret.
