//! The view on ratatui's `TestBackend`: what the screen says, and that no control char, escape
//! or bidi control from the network reaches the buffer.

use proptest::prelude::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::top::model::Input;
use crate::top::snapshot::{Ranked, Snapshot};

fn screen(model: &Model, width: u16, height: u16) -> (String, Vec<String>) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, model, 2_500)).unwrap();
    let buffer = terminal.backend().buffer();
    let symbols: Vec<String> = buffer
        .content()
        .iter()
        .map(|c| c.symbol().to_owned())
        .collect();
    let mut text = String::new();
    for row in symbols.chunks(usize::from(width)) {
        text.push_str(&row.concat());
        text.push('\n');
    }
    (text, symbols)
}

fn snapshot(events: u64, user_agent: &str) -> Snapshot {
    let row = |text: &str, count| Ranked {
        text: crate::top::sanitize::neutralise(text, 96),
        count,
    };
    Snapshot {
        counters: Counters {
            datagrams_received: Some(events),
            events: Some(events),
            stored: Some(events),
            dropped: Some(0),
            verified_ips: Some(1),
            ..Counters::default()
        },
        top_ips: vec![row("127.0.0.7", 9)],
        top_numbers: vec![row("100", 9)],
        top_user_agents: vec![row(user_agent, 9)],
    }
}

fn no_control(symbols: &[String]) -> bool {
    symbols.iter().all(|s| {
        !s.chars().any(|c| {
            c.is_control()
                || ('\u{202A}'..='\u{202E}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
    })
}

#[test]
fn top_view_shows_rates_and_lists() {
    let mut model = Model::new("http://127.0.0.1:8082");
    model.handle_snapshot(0, snapshot(0, "friendly-scanner"));
    model.handle_snapshot(1_000, snapshot(50, "friendly-scanner"));
    let (text, _) = screen(&model, 160, 50);
    assert!(text.contains("now 50.0/s"), "{text}");
    assert!(text.contains("127.0.0.7"), "{text}");
    assert!(text.contains("friendly-scanner"), "{text}");
    assert!(text.contains("verified IPs   1"), "{text}");
    assert!(text.contains("per shard: not exported"), "{text}");
    assert!(text.contains("webhook        off"), "{text}");
    assert!(text.contains("connected"), "{text}");
    assert!(
        text.contains("▶ Source IPs"),
        "focus starts on the IPs: {text}"
    );
    model.handle_input(Input::NextPane);
    let (text, _) = screen(&model, 160, 50);
    assert!(text.contains("▶ Called numbers"), "{text}");
}

#[test]
fn top_view_problems_and_small_terminal() {
    let mut model = Model::new("http://127.0.0.1:1");
    model.handle_problem(Problem::Unauthorized);
    let (text, _) = screen(&model, 120, 30);
    assert!(text.contains("401 Unauthorized"), "{text}");
    model.handle_problem(Problem::Unreachable("connection refused".into()));
    let (text, _) = screen(&model, 120, 30);
    assert!(text.contains("Cannot reach the API"), "{text}");
    assert!(text.contains("retrying every second"), "{text}");
    let (text, _) = screen(&model, 40, 10);
    assert!(text.contains("Terminal too small"), "{text}");
    // Degenerate sizes draw without a panic.
    for (w, h) in [(1, 1), (80, 24), (79, 24), (500, 200)] {
        let _ = screen(&model, w, h);
    }
}

#[test]
fn top_view_hostile_user_agent_is_harmless() {
    let hostile = "x\x1b]0;pwned\x07\x1b[2J\u{9b}1m\u{202E}evil";
    let mut model = Model::new("http://127.0.0.1:8082");
    model.handle_snapshot(0, snapshot(1, hostile));
    let (text, symbols) = screen(&model, 160, 50);
    assert!(no_control(&symbols));
    assert!(
        text.contains("x\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}[2J"),
        "{text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn top_view_never_draws_controls(agent in any::<String>(), number in any::<String>()) {
        let mut model = Model::new(&number);
        let mut snap = snapshot(1, &agent);
        snap.top_numbers[0].text = crate::top::sanitize::neutralise(&number, 96);
        model.handle_snapshot(0, snap);
        model.handle_problem(Problem::Unreachable(crate::top::sanitize::neutralise(&agent, 96)));
        let (_, symbols) = screen(&model, 100, 30);
        prop_assert!(no_control(&symbols));
    }
}

#[test]
fn top_view_backlogs_and_shards_when_exported() {
    let mut model = Model::new("http://127.0.0.1:8082");
    let mut snap = snapshot(5, "a");
    snap.counters.webhook_lag_events = Some(17);
    snap.counters.p2p_pending_entries = Some(3);
    snap.counters.p2p_peers = Some(2);
    snap.counters.events_by_shard = vec![("0".into(), 3), ("1".into(), 2)];
    snap.counters.dropped = Some(4);
    snap.counters.kernel_dropped = Some(9);
    model.handle_snapshot(0, snap);
    let (text, _) = screen(&model, 160, 50);
    assert!(
        text.contains("webhook        17 events not delivered yet"),
        "{text}"
    );
    assert!(
        text.contains("P2P            3 entries pending, 2 peers"),
        "{text}"
    );
    assert!(text.contains("per shard: 0: 3  1: 2"), "{text}");
    assert!(text.contains("dropped (app)                  4"), "{text}");
    assert!(text.contains("dropped (kernel)               9"), "{text}");
    model.handle_input(Input::TogglePause);
    let (text, _) = screen(&model, 160, 50);
    assert!(text.contains("PAUSED (p resumes)"), "{text}");
}
