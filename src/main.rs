//! The `sentrypeer` binary: parse the configuration, then run until SIGINT/SIGTERM.

use std::process::ExitCode;

fn main() -> ExitCode {
    sentrypeer::app::main()
}
