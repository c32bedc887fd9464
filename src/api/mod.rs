//! The HTTP API of compat.md §5: read-only, over LMDB read transactions, off the sensor cores.
//!
//! Never: writes to LMDB, returns unpaginated results, lets a client block the sensor.
