//! What `top` knows: the latest [`Snapshot`], a bounded history of counter values for rates and
//! the sparkline, the last problem reaching the API, and the operator's choices (pause, focused
//! pane, scroll).
//!
//! Pure: time comes in as milliseconds from the caller's monotonic clock; rates are counter deltas
//! over the time passed between two polls (a counter that went down, i.e. a restarted sensor,
//! gives 0, never a negative rate).
//!
//! Never: does I/O or reads a clock; keeps more than [`limits::TOP_HISTORY_POINTS`] points.

use std::collections::VecDeque;

use super::snapshot::{Ranked, Snapshot};
use crate::config::limits;

/// Why the last poll failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No answer: connection refused, DNS, timeout (the text says which, neutralised).
    Unreachable(String),
    /// 401: the API wants a token, or another one.
    Unauthorized,
    /// Another status, or a body that is too large or not what the API sends.
    Bad(String),
}

/// One of the three lists; tab and the arrows move between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Ips,
    Numbers,
    UserAgents,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Ips, Pane::Numbers, Pane::UserAgents];

    fn index(self) -> usize {
        match self {
            Pane::Ips => 0,
            Pane::Numbers => 1,
            Pane::UserAgents => 2,
        }
    }
}

/// What the operator asked for (the shell maps keys to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Quit,
    TogglePause,
    NextPane,
    PreviousPane,
    ScrollUp,
    ScrollDown,
}

/// Counter values at one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    at_ms: u64,
    events: u64,
    stored: u64,
    dropped: u64,
}

/// Events, stored and dropped per second between two polls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub events_per_s: f64,
    pub stored_per_s: f64,
    pub dropped_per_s: f64,
}

/// The whole state of the view.
#[derive(Debug, Clone)]
pub struct Model {
    /// The API's URL, neutralised for display.
    pub api_url: String,
    latest: Option<Snapshot>,
    latest_at_ms: Option<u64>,
    history: VecDeque<Point>,
    problem: Option<Problem>,
    failures: u64,
    paused: bool,
    focus: Pane,
    scroll: [usize; 3],
}

impl Model {
    pub fn new(api_url: &str) -> Self {
        Self {
            api_url: super::sanitize::neutralise(api_url, limits::TOP_STRING_CHARS_MAX),
            latest: None,
            latest_at_ms: None,
            history: VecDeque::with_capacity(limits::TOP_HISTORY_POINTS),
            problem: None,
            failures: 0,
            paused: false,
            focus: Pane::Ips,
            scroll: [0; 3],
        }
    }

    /// A poll at `now_ms` answered with `snapshot`.
    pub fn handle_snapshot(&mut self, now_ms: u64, snapshot: Snapshot) {
        let c = &snapshot.counters;
        if let (Some(events), Some(stored)) = (c.events, c.stored) {
            if self.history.len() == limits::TOP_HISTORY_POINTS {
                self.history.pop_front();
            }
            self.history.push_back(Point {
                at_ms: now_ms,
                events,
                stored,
                dropped: c.dropped.unwrap_or(0),
            });
        }
        self.latest = Some(snapshot);
        self.latest_at_ms = Some(now_ms);
        self.problem = None;
        self.failures = 0;
    }

    /// A poll failed; the last snapshot stays on screen, marked stale.
    pub fn handle_problem(&mut self, problem: Problem) {
        self.problem = Some(problem);
        self.failures = self.failures.saturating_add(1);
    }

    /// Applies the operator's input; returns `true` when `top` should end.
    pub fn handle_input(&mut self, input: Input) -> bool {
        let focus = self.focus.index();
        match input {
            Input::Quit => return true,
            Input::TogglePause => self.paused = !self.paused,
            Input::NextPane => self.focus = Pane::ALL[(focus + 1) % 3],
            Input::PreviousPane => self.focus = Pane::ALL[(focus + 2) % 3],
            Input::ScrollUp => self.scroll[focus] = self.scroll[focus].saturating_sub(1),
            Input::ScrollDown => {
                let rows = self.list(self.focus).len();
                self.scroll[focus] = (self.scroll[focus] + 1).min(rows.saturating_sub(1));
            }
        }
        false
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn focus(&self) -> Pane {
        self.focus
    }

    pub fn scroll(&self, pane: Pane) -> usize {
        self.scroll[pane.index()]
    }

    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// Failed polls in a row.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn latest(&self) -> Option<&Snapshot> {
        self.latest.as_ref()
    }

    /// Milliseconds since the last good poll, at `now_ms`.
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        self.latest_at_ms.map(|at| now_ms.saturating_sub(at))
    }

    /// The ranked rows of `pane`.
    pub fn list(&self, pane: Pane) -> &[Ranked] {
        let Some(snapshot) = &self.latest else {
            return &[];
        };
        match pane {
            Pane::Ips => &snapshot.top_ips,
            Pane::Numbers => &snapshot.top_numbers,
            Pane::UserAgents => &snapshot.top_user_agents,
        }
    }

    /// Rates between the last two polls; `None` before two polls.
    pub fn rates_now(&self) -> Option<Rates> {
        let mut last = self.history.iter().rev();
        let (newer, older) = (last.next()?, last.next()?);
        Some(rates(older, newer))
    }

    /// Average rates over the last `window_ms` (or as much history as there is).
    pub fn rates_over(&self, window_ms: u64) -> Option<Rates> {
        let newer = self.history.back()?;
        let since = newer.at_ms.saturating_sub(window_ms);
        let older = self.history.iter().find(|p| p.at_ms >= since)?;
        (older.at_ms < newer.at_ms).then(|| rates(older, newer))
    }

    /// Events per second between consecutive polls, oldest first, the last `points_max` of them.
    pub fn events_per_s_history(&self, points_max: usize) -> Vec<u64> {
        let pairs = self.history.iter().zip(self.history.iter().skip(1));
        let all: Vec<u64> = pairs
            .map(|(older, newer)| rates(older, newer).events_per_s.round() as u64)
            .collect();
        let skip = all.len().saturating_sub(points_max);
        all.into_iter().skip(skip).collect()
    }
}

fn rates(older: &Point, newer: &Point) -> Rates {
    let seconds = newer.at_ms.saturating_sub(older.at_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return Rates::default();
    }
    let per_s = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
    Rates {
        events_per_s: per_s(newer.events, older.events),
        stored_per_s: per_s(newer.stored, older.stored),
        dropped_per_s: per_s(newer.dropped, older.dropped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::snapshot::Counters;

    fn snapshot(events: u64, stored: u64) -> Snapshot {
        Snapshot {
            counters: Counters {
                events: Some(events),
                stored: Some(stored),
                dropped: Some(0),
                ..Counters::default()
            },
            ..Snapshot::default()
        }
    }

    #[test]
    fn top_model_rates_from_deltas() {
        let mut model = Model::new("http://127.0.0.1:8082");
        assert_eq!(model.rates_now(), None);
        model.handle_snapshot(1_000, snapshot(100, 90));
        assert_eq!(model.rates_now(), None, "one point is no rate");
        model.handle_snapshot(3_000, snapshot(300, 290));
        let now = model.rates_now().unwrap();
        assert_eq!(now.events_per_s, 100.0);
        assert_eq!(now.stored_per_s, 100.0);
        model.handle_snapshot(4_000, snapshot(5, 5));
        assert_eq!(
            model.rates_now().unwrap().events_per_s,
            0.0,
            "restart: not negative"
        );
        assert_eq!(model.events_per_s_history(10), vec![100, 0]);
        assert_eq!(model.events_per_s_history(1), vec![0]);
        assert_eq!(model.rates_over(60_000).unwrap().events_per_s, 0.0);
        assert_eq!(model.age_ms(4_500), Some(500));
    }

    #[test]
    fn top_model_history_is_bounded() {
        let mut model = Model::new("x");
        for i in 0..(limits::TOP_HISTORY_POINTS as u64 + 50) {
            model.handle_snapshot(i * 1_000, snapshot(i * 10, i * 10));
        }
        assert_eq!(model.history.len(), limits::TOP_HISTORY_POINTS);
        assert_eq!(model.rates_over(10_000).unwrap().events_per_s, 10.0);
    }

    #[test]
    fn top_model_problem_and_input() {
        let mut model = Model::new("x");
        model.handle_problem(Problem::Unauthorized);
        model.handle_problem(Problem::Unauthorized);
        assert_eq!(model.failures(), 2);
        model.handle_snapshot(0, snapshot(1, 1));
        assert_eq!(model.problem(), None);
        assert!(!model.handle_input(Input::TogglePause));
        assert!(model.paused());
        assert!(!model.handle_input(Input::PreviousPane));
        assert_eq!(model.focus(), Pane::UserAgents);
        assert!(!model.handle_input(Input::NextPane));
        assert_eq!(model.focus(), Pane::Ips);
        assert!(!model.handle_input(Input::ScrollDown));
        assert_eq!(model.scroll(Pane::Ips), 0, "nothing to scroll");
        assert!(model.handle_input(Input::Quit));
    }
}
