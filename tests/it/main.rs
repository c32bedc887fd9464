//! Integration tests: one binary, a module per area.

#[macro_use]
mod engine;
mod clients;
mod tcp;
mod tls;
mod udp;
