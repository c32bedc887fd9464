//! Counters and histograms shared by the parts, rendered as Prometheus text by the API.
//!
//! Never: takes a lock or allocates on the hot path (counters are relaxed atomics, one cache line
//! per shard).
