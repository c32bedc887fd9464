//! The screen of `top`: ratatui widgets drawn from the [`Model`] into a `Frame`.
//!
//! Pure given the frame: no I/O, no clock (the time is passed in), so it is tested on ratatui's
//! `TestBackend`. Text from the network reaches it already neutralised (see `sanitize`); the URL
//! and problem texts are neutralised by the model and the fetcher.
//!
//! Never: draws a string that did not go through `sanitize`; panics on a small or odd-sized
//! area (below [`limits::TOP_MIN_COLUMNS`] x [`limits::TOP_MIN_ROWS`] it only says so).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Sparkline, Wrap};

use super::model::{Model, Pane, Problem, Rates};
use super::prom::as_count;
use super::snapshot::{Counters, Quantiles};
use crate::config::limits;

/// Draws the whole screen for `model` at `now_ms` (the clock the model's times come from).
pub fn draw(frame: &mut Frame<'_>, model: &Model, now_ms: u64) {
    let area = frame.area();
    if area.width < limits::TOP_MIN_COLUMNS || area.height < limits::TOP_MIN_ROWS {
        draw_too_small(frame, area);
        return;
    }
    // The rates row (with the sparkline) gets a third of the height left, at least its 9 rows.
    let rates_rows = 9.max(area.height.saturating_sub(9) / 3);
    let [header, status, rates, middle, lists, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(rates_rows),
        Constraint::Length(6),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(model, now_ms)), header);
    frame.render_widget(Paragraph::new(status_line(model)), status);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(rates);
    draw_rates(frame, model, left);
    let counters = model
        .latest()
        .map(|s| s.counters.clone())
        .unwrap_or_default();
    let pipeline = Paragraph::new(pipeline_lines(&counters, model.rates_now()))
        .block(titled("Received / stored / dropped", false));
    frame.render_widget(pipeline, right);
    let [writer, backlog] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    frame.render_widget(
        Paragraph::new(writer_lines(&counters)).block(titled("Writer", false)),
        writer,
    );
    frame.render_widget(
        Paragraph::new(backlog_lines(&counters)).block(titled("Backlogs and sources", false)),
        backlog,
    );
    draw_lists(frame, model, lists);
    let keys = "q quit   p pause   tab / ← → switch pane   ↑ ↓ scroll";
    frame.render_widget(
        Paragraph::new(Line::styled(keys, Style::new().fg(Color::DarkGray))),
        footer,
    );
}

fn draw_too_small(frame: &mut Frame<'_>, area: Rect) {
    let text = format!(
        "Terminal too small: {}x{}; sentrypeer top needs at least {}x{}. Enlarge it, or press q.",
        area.width,
        area.height,
        limits::TOP_MIN_COLUMNS,
        limits::TOP_MIN_ROWS
    );
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn titled(title: &str, focused: bool) -> Block<'_> {
    let style = if focused {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let title = if focused {
        format!("▶ {title}")
    } else {
        title.to_owned()
    };
    Block::new()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(title, style))
}

fn header_line(model: &Model, now_ms: u64) -> Line<'static> {
    let mut spans = vec![
        Span::styled("sentrypeer top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}", model.api_url)),
    ];
    if let Some(age_ms) = model.age_ms(now_ms) {
        spans.push(Span::raw(format!(
            "  updated {:.1} s ago",
            age_ms as f64 / 1000.0
        )));
    }
    if model.paused() {
        spans.push(Span::styled(
            "  PAUSED (p resumes)",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans)
}

/// The problem of the last poll, or that all is well.
fn status_line(model: &Model) -> Line<'static> {
    let retry = "retrying every second";
    let text = match model.problem() {
        None if model.latest().is_none() => return Line::raw("connecting..."),
        None => return Line::styled("connected", Style::new().fg(Color::Green)),
        Some(Problem::Unreachable(why)) => {
            format!("Cannot reach the API at {}: {why}; {retry}", model.api_url)
        }
        Some(Problem::Unauthorized) => format!(
            "The API answered 401 Unauthorized: wrong or missing token (--api-token, \
             SENTRYPEER_API_TOKEN or api_token); {retry}"
        ),
        Some(Problem::Bad(why)) => format!("The API gave an unusable answer: {why}; {retry}"),
    };
    let failures = model.failures();
    Line::styled(
        format!("{text} (failed {failures}x; data below is stale)"),
        Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
    )
}

fn draw_rates(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let block = titled("Events/s", false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [numbers, spark] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let rate = |rates: Option<Rates>| rates.map_or("-".to_owned(), |r| per_s(r.events_per_s));
    let lines = vec![
        Line::raw(format!(
            "now {}   1 min {}   5 min {}",
            rate(model.rates_now()),
            rate(model.rates_over(60_000)),
            rate(model.rates_over(300_000)),
        )),
        Line::styled(
            "one bar per poll, newest right",
            Style::new().fg(Color::DarkGray),
        ),
    ];
    frame.render_widget(Paragraph::new(lines), numbers);
    let data = model.events_per_s_history(usize::from(spark.width));
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(Style::new().fg(Color::Cyan)),
        spark,
    );
}

fn per_s(value: f64) -> String {
    format!("{value:.1}/s")
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn pipeline_lines(c: &Counters, now: Option<Rates>) -> Vec<Line<'static>> {
    let rate = |pick: fn(&Rates) -> f64| now.as_ref().map_or("-".to_owned(), |r| per_s(pick(r)));
    let dropped_style = if c.dropped.unwrap_or(0) > 0 {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    let shards = if c.events_by_shard.is_empty() {
        "per shard: not exported by this sensor (totals shown)".to_owned()
    } else {
        let parts: Vec<String> = c
            .events_by_shard
            .iter()
            .map(|(shard, events)| format!("{shard}: {events}"))
            .collect();
        format!("per shard: {}", parts.join("  "))
    };
    vec![
        Line::raw(format!(
            "datagrams received  {:>12}",
            count(c.datagrams_received)
        )),
        Line::raw(format!(
            "events (requests)   {:>12}   {}",
            count(c.events),
            rate(|r| r.events_per_s)
        )),
        Line::raw(format!(
            "stored              {:>12}   {}",
            count(c.stored),
            rate(|r| r.stored_per_s)
        )),
        Line::styled(
            format!(
                "dropped (app)       {:>12}   {}   writer channel full",
                count(c.dropped),
                rate(|r| r.dropped_per_s)
            ),
            dropped_style,
        ),
        match c.kernel_dropped {
            Some(drops) => Line::raw(format!(
                "dropped (kernel)    {:>12}   receive buffer full (--udp-rcvbuf)",
                drops
            )),
            None => Line::raw("dropped (kernel)    not exported by this sensor"),
        },
        Line::raw(shards),
    ]
}

/// Microseconds shown as milliseconds.
fn millis(microseconds: Option<f64>) -> String {
    microseconds.map_or_else(|| "-".to_owned(), |us| format!("{:.1} ms", us / 1000.0))
}

fn writer_lines(c: &Counters) -> Vec<Line<'static>> {
    let Quantiles { p50, p99, count: n } = c.batch_events;
    let commit = c.commit_microseconds;
    vec![
        Line::raw(format!(
            "batch size      p50 {}   p99 {}   ({} batches)",
            count(p50.map(as_count)),
            count(p99.map(as_count)),
            count(n)
        )),
        Line::raw(format!(
            "commit latency  p50 {}   p99 {}",
            millis(commit.p50),
            millis(commit.p99)
        )),
        Line::styled(
            "summaries since the sensor started",
            Style::new().fg(Color::DarkGray),
        ),
    ]
}

fn backlog_lines(c: &Counters) -> Vec<Line<'static>> {
    let webhook = c.webhook_lag_events.map_or_else(
        || "webhook        off".to_owned(),
        |lag| format!("webhook        {lag} events not delivered yet"),
    );
    let p2p = match (c.p2p_pending_entries, c.p2p_peers) {
        (None, None) => "P2P            off".to_owned(),
        (pending, peers) => format!(
            "P2P            {} entries pending, {} peers",
            count(pending),
            count(peers)
        ),
    };
    vec![
        Line::raw(webhook),
        Line::raw(p2p),
        Line::raw(format!("verified IPs   {}", count(c.verified_ips))),
    ]
}

fn draw_lists(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let areas = Layout::horizontal([
        Constraint::Percentage(25),
        Constraint::Percentage(25),
        Constraint::Percentage(50),
    ])
    .split(area);
    let minutes = limits::TOP_WINDOW_S / 60;
    for (pane, area) in Pane::ALL.into_iter().zip(areas.iter()) {
        let title = match pane {
            Pane::Ips => format!("Source IPs ({minutes} min, total seen)"),
            Pane::Numbers => format!("Called numbers ({minutes} min, total seen)"),
            Pane::UserAgents => format!(
                "User agents (last {} events of {minutes} min)",
                limits::TOP_EVENTS_LIMIT
            ),
        };
        let items: Vec<ListItem<'_>> = model
            .list(pane)
            .iter()
            .skip(model.scroll(pane))
            .map(|row| ListItem::new(format!("{:>7}  {}", row.count, row.text)))
            .collect();
        let list = List::new(items).block(titled(&title, model.focus() == pane));
        frame.render_widget(list, *area);
    }
}

#[cfg(test)]
mod tests;
