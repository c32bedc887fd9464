//! SentryPeer: a SIP honeypot and VoIP fraud-detection sensor.
//!
//! Data flows one way: `sensor` shards receive bytes and scan them with `sip`, build an
//! [`event::Event`] and `try_send` it to the one `store` writer, which commits it to LMDB and then
//! fans it out to the JSON log, syslog, `webhook` and `p2p`. The `api` reads the store through
//! LMDB read transactions. `config` parses everything once at start-up; `app` wires the parts
//! together in that order and stops them in the reverse one. `top` is the `sentrypeer top`
//! subcommand: a terminal view of a running sensor, through its API. `enrich` looks source IPs up
//! in the operator's MMDB files (country, AS) after the channel, in the store's encoder thread.

pub mod api;
pub mod app;
pub mod config;
pub mod enrich;
pub mod event;
pub mod ignore;
pub mod metrics;
pub mod nats;
pub mod p2p;
pub mod sensor;
pub mod sip;
pub mod store;
pub mod token_bucket;
pub mod top;
pub mod webhook;
pub mod worker_thread;
