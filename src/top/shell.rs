//! The terminal around `top`: raw mode and the alternate screen, restored on every way out (`q`,
//! Ctrl-C as a key, SIGINT/SIGTERM/SIGHUP, an error, a panic); keys to [`Input`]s; a poller thread
//! that asks the API once a second and hands each outcome to the loop.
//!
//! Never: holds a decision the model or the view can make; blocks the key loop on the network
//! (requests run on the poller thread); leaves the terminal unrestored.

use std::error::Error;
use std::io::{self, IsTerminal, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use time::OffsetDateTime;

use super::fetch::Api;
use super::model::{Input, Model, Problem};
use super::snapshot::Snapshot;
use super::view;
use crate::config::{Secret, limits};

/// One poll's outcome and when it started.
type Outcome = (Instant, Result<Snapshot, Problem>);

/// What `sentrypeer top` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The API, `http://host:port`.
    pub api_url: String,
    /// The bearer token to send, if any.
    pub token: Option<Secret>,
    /// Test hook: panic right after the first screen is drawn.
    pub panic_after_first_draw: bool,
}

/// Runs `top` until the operator quits or a signal arrives.
pub fn run(options: &Options) -> Result<(), Box<dyn Error>> {
    let api_url = options.api_url.as_str();
    if !io::stdout().is_terminal() {
        return Err("top draws a full-screen view: its standard output must be a terminal".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    install_panic_hook();
    let mut screen = Screen::enter()?;
    let paused = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let api = Api::new(api_url, options.token.clone());
    let outcomes = start_poller(api, Arc::clone(&paused));
    let mut model = Model::new(api_url);
    while !stop.load(Ordering::Relaxed) {
        loop {
            match outcomes.try_recv() {
                Ok((at, outcome)) => apply(&mut model, ms_since(started, at), outcome),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err("the API poller stopped".into()),
            }
        }
        let now_ms = ms_since(started, Instant::now());
        screen
            .terminal
            .draw(|frame| view::draw(frame, &model, now_ms))?;
        #[allow(clippy::panic)]
        if options.panic_after_first_draw {
            panic!("test hook: --danger-panic-after-first-draw");
        }
        if !event::poll(limits::TOP_REDRAW_INTERVAL)? {
            continue;
        }
        if let Some(input) = input_of(&event::read()?) {
            if model.handle_input(input) {
                break;
            }
            paused.store(model.paused(), Ordering::Relaxed);
        }
    }
    drop(screen);
    Ok(())
}

fn apply(model: &mut Model, at_ms: u64, outcome: Result<Snapshot, Problem>) {
    if model.paused() {
        return;
    }
    match outcome {
        Ok(snapshot) => model.handle_snapshot(at_ms, snapshot),
        Err(problem) => model.handle_problem(problem),
    }
}

fn ms_since(started: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX)
}

/// The operator's input in a key: `q`/Esc/Ctrl-C quit (raw mode turns Ctrl-C into a key), `p`
/// pauses, tab/shift-tab/←/→ switch panes, ↑/↓ scroll.
fn input_of(event: &Event) -> Option<Input> {
    let Event::Key(KeyEvent {
        code,
        modifiers,
        kind: KeyEventKind::Press,
        ..
    }) = event
    else {
        return None;
    };
    let control = modifiers.contains(KeyModifiers::CONTROL);
    Some(match code {
        KeyCode::Char('c' | 'd') if control => Input::Quit,
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Input::Quit,
        KeyCode::Char('p' | 'P' | ' ') => Input::TogglePause,
        KeyCode::Tab | KeyCode::Right => Input::NextPane,
        KeyCode::BackTab | KeyCode::Left => Input::PreviousPane,
        KeyCode::Up => Input::ScrollUp,
        KeyCode::Down => Input::ScrollDown,
        _ => return None,
    })
}

/// Polls the API every [`limits::TOP_POLL_INTERVAL`] (not while paused) on its own thread; ends
/// when the receiver is gone.
fn start_poller(api: Api, paused: Arc<AtomicBool>) -> Receiver<Outcome> {
    let (sender, receiver) = mpsc::sync_channel(2);
    thread::spawn(move || {
        loop {
            let started = Instant::now();
            if !paused.load(Ordering::Relaxed) {
                let outcome = api.poll(OffsetDateTime::now_utc());
                if sender.send((started, outcome)).is_err() {
                    return;
                }
            }
            let due = started + limits::TOP_POLL_INTERVAL;
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    });
    receiver
}

/// The terminal in raw mode on the alternate screen, cursor hidden, until dropped.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> io::Result<Self> {
        enable_raw_mode()?;
        let entered = execute!(io::stdout(), EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and turns raw mode off; safe to call twice.
fn restore() {
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
}

/// A panic restores the terminal before the message is printed, so the message is readable.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn top_shell_keys() {
        let none = KeyModifiers::NONE;
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(input_of(&key(KeyCode::Char('q'), none)), Some(Input::Quit));
        assert_eq!(input_of(&key(KeyCode::Char('c'), ctrl)), Some(Input::Quit));
        assert_eq!(input_of(&key(KeyCode::Char('c'), none)), None);
        assert_eq!(
            input_of(&key(KeyCode::Char('p'), none)),
            Some(Input::TogglePause)
        );
        assert_eq!(input_of(&key(KeyCode::Tab, none)), Some(Input::NextPane));
        assert_eq!(
            input_of(&key(KeyCode::Left, none)),
            Some(Input::PreviousPane)
        );
        assert_eq!(input_of(&Event::Resize(10, 10)), None);
    }
}
