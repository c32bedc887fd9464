//! The export's progress bar: events done of the store's count, rate and ETA, drawn by indicatif
//! on stderr.
//!
//! Never: draws when stderr is not a terminal, or when the exported data goes to the same
//! terminal (see [`export_bar_wanted`]); writes to stdout.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::commands::ExportProgress;

/// The bar's look: `[####    ] 12,288/40,000 events, 61,440/s, ETA 0s`.
const EXPORT_BAR_TEMPLATE: &str =
    "[{bar:30}] {human_pos}/{human_len} events, {per_sec:0}, ETA {eta}";

/// Whether to draw the export bar: stderr is a terminal, and the data does not go to a terminal
/// (it goes to `--output`, or stdout is a file or a pipe), where the bar would be mixed into it.
pub(crate) fn export_bar_wanted(stderr_tty: bool, stdout_tty: bool, to_file: bool) -> bool {
    stderr_tty && (to_file || !stdout_tty)
}

/// The export's bar on stderr.
pub(crate) struct ExportBar {
    bar: ProgressBar,
}

impl ExportBar {
    pub(crate) fn new() -> Self {
        let style = ProgressStyle::with_template(EXPORT_BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-");
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(style);
        Self { bar }
    }
}

impl ExportProgress for ExportBar {
    fn start(&mut self, total_events: u64) {
        self.bar.set_length(total_events);
        self.bar.reset_eta();
    }

    fn advance(&mut self, done_events: u64) {
        // Events stored since the count was taken are exported too: the bar grows with them.
        if done_events > self.bar.length().unwrap_or(0) {
            self.bar.set_length(done_events);
        }
        self.bar.set_position(done_events);
    }

    fn finish(&mut self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_bar_only_on_a_terminal_without_the_data() {
        // (stderr a terminal, stdout a terminal, to a file) -> drawn
        let cases = [
            ((true, false, false), true),
            ((true, true, true), true),
            ((true, false, true), true),
            ((true, true, false), false),
            ((false, false, false), false),
            ((false, false, true), false),
            ((false, true, true), false),
        ];
        for ((stderr_tty, stdout_tty, to_file), wanted) in cases {
            assert_eq!(
                export_bar_wanted(stderr_tty, stdout_tty, to_file),
                wanted,
                "stderr tty {stderr_tty}, stdout tty {stdout_tty}, to file {to_file}"
            );
        }
    }
}
