//! NATS JetStream: this node's committed events published to a stream (`publisher`), and, on a
//! hub (`--nats-ingest`), the fleet's events read back from it into the local store (`ingest`).
//!
//! `connect` builds the client options (credentials, TLS, bounded reconnects) and makes sure the
//! stream exists; both sides use it. Each side runs on its own thread with its own
//! current-thread tokio runtime, so a slow or absent NATS server never touches the sensor's
//! shards or the writer. The publisher: `publisher` (handle, thread, options), `publish_loop`
//! (the async loop), `publish_policy` (its pure decisions), `publish_metrics` (`/metrics`).
//!
//! Never: publish on a hub (events it ingested would loop back into the stream), or block the
//! writer or a shard.

pub mod connect;
pub mod ingest;
pub mod ingest_decode;
pub mod ingest_metrics;
mod publish_loop;
mod publish_metrics;
mod publish_policy;
pub mod publisher;

pub use publish_metrics::PublisherMetrics;
