//! `sentrypeer top`: a full-screen terminal view of a running sensor, redrawn every second from its
//! HTTP API (`/metrics`, `/ip-addresses`, `/numbers`, `/events`).
//!
//! Layout: `prom` parses the Prometheus text, `snapshot` turns bodies into one [`snapshot::Snapshot`]
//! (neutralising every string from the network with `sanitize`), `model` keeps the bounded
//! history, rates and the operator's choices, `view` draws the model with ratatui; `fetch` (HTTP,
//! time-limited and size-capped) and `shell` (terminal set-up and restore, keys, signals, the 1 s
//! poll) are the thin I/O around them.
//!
//! Never: writes to the sensor (every request is a `GET`); draws an attacker's string as it came;
//! leaves the operator's terminal in raw mode or the alternate screen, on any exit.

pub mod fetch;
pub mod model;
pub mod prom;
pub mod sanitize;
pub mod shell;
pub mod snapshot;
pub mod view;

pub use shell::{Options, run};
