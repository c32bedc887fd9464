//! The store: one writer thread batches events into LMDB write transactions, then emits the JSON
//! log and syslog and advances the delivery cursors; readers use LMDB read transactions.
//!
//! Never: runs on a shard, holds a write transaction across blocking I/O, panics on a corrupt
//! record.
