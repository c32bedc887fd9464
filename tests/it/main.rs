//! Integration tests: one binary, a module per area.

/// The `sentrypeer` binary's command line, environment, config file and exit codes.
mod cli;
