//! A named background thread of the sensor (writer, encoder, output, webhook, NATS publisher and
//! hub, API): spawned under its name, and joined with a line on stderr when it panicked.
//!
//! Never: detaches a thread or lets its panic pass without a word.

use std::thread::JoinHandle;

/// One running background thread; `T` is what it returns (most return nothing).
#[derive(Debug)]
pub struct WorkerThread<T = ()> {
    name: &'static str,
    thread: JoinHandle<T>,
}

impl<T: Send + 'static> WorkerThread<T> {
    /// Starts `run` on a thread named `name`.
    pub fn spawn(
        name: &'static str,
        run: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new().name(name.into()).spawn(run)?;
        Ok(Self { name, thread })
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread to end and returns what it returned; `None` (and a line on stderr)
    /// when it panicked.
    pub fn join(self) -> Option<T> {
        let returned = self.thread.join().ok();
        if returned.is_none() {
            eprintln!("sentrypeer: the {} thread panicked", self.name);
        }
        returned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_thread_runs_under_its_name_and_joins() {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = WorkerThread::spawn("test-worker", move || {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send(name);
        })
        .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("test-worker"));
        assert_eq!(thread.join(), Some(()));
    }

    #[test]
    fn worker_thread_returns_its_value_or_none_when_it_panicked() {
        let thread = WorkerThread::spawn("test-value", || 42).unwrap();
        assert_eq!(thread.join(), Some(42));
        let thread = WorkerThread::spawn("test-panic", || -> u8 { panic!("on purpose") }).unwrap();
        assert_eq!(thread.join(), None);
    }
}
