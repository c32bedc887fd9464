//! One look at a sensor: the `/metrics` samples and the API's lists turned into a [`Snapshot`].
//!
//! Pure: bodies in, values out. Every string that came from the network (source IPs, called
//! numbers, user agents) is neutralised here, before anything can draw it.
//!
//! Never: does I/O; keeps an attacker string un-neutralised; keeps more than
//! [`limits::TOP_LIST_ROWS_MAX`] rows of a list.

use std::collections::HashMap;

use serde::Deserialize;

use super::prom::{Metrics, as_count};
use super::sanitize::neutralise;
use crate::config::limits;

/// A ranked row: neutralised text and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    pub text: String,
    pub count: u64,
}

/// The median and 99th percentile of a summary, if the sensor exposes it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub count: Option<u64>,
}

/// What the sensor's counters say at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub datagrams_received: Option<u64>,
    /// SIP requests turned into events (`sentrypeer_events_total`).
    pub events: Option<u64>,
    /// Events committed by the writer.
    pub stored: Option<u64>,
    /// Events dropped because the writer channel was full.
    pub dropped: Option<u64>,
    /// Datagrams the kernel dropped on the sensor's UDP sockets (receive buffer full).
    pub kernel_dropped: Option<u64>,
    /// Events by shard (`sentrypeer_shard_events_total{shard=...}`; empty when not exported).
    pub events_by_shard: Vec<(String, u64)>,
    pub batch_events: Quantiles,
    pub commit_microseconds: Quantiles,
    pub webhook_lag_events: Option<u64>,
    pub p2p_pending_entries: Option<u64>,
    pub p2p_peers: Option<u64>,
    pub verified_ips: Option<u64>,
}

/// Counters plus the busy sources, numbers and user agents of the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub counters: Counters,
    pub top_ips: Vec<Ranked>,
    pub top_numbers: Vec<Ranked>,
    pub top_user_agents: Vec<Ranked>,
}

impl Counters {
    /// The counters `top` shows, from a `/metrics` body.
    pub fn from_metrics(text: &str) -> Self {
        let m = Metrics::parse(text);
        let events_by_shard = m
            .by_label("sentrypeer_shard_events_total", "shard")
            .into_iter()
            .map(|(shard, value)| (neutralise(&shard, 16), as_count(value)))
            .collect();
        Self {
            datagrams_received: m.count("sentrypeer_sip_datagrams_received_total"),
            events: m.count("sentrypeer_events_total"),
            stored: m.count("sentrypeer_writer_events_committed_total"),
            dropped: m.count("sentrypeer_events_dropped_total"),
            kernel_dropped: m.count("sentrypeer_sip_udp_kernel_drops_total"),
            events_by_shard,
            batch_events: quantiles(&m, "sentrypeer_writer_batch_events"),
            commit_microseconds: quantiles(&m, "sentrypeer_writer_commit_microseconds"),
            webhook_lag_events: m.count("sentrypeer_webhook_lag_events"),
            p2p_pending_entries: m.count("sentrypeer_p2p_pending_entries"),
            p2p_peers: m.count("sentrypeer_p2p_peers"),
            verified_ips: m.count("sentrypeer_store_verified_ips"),
        }
    }
}

fn quantiles(m: &Metrics, name: &str) -> Quantiles {
    Quantiles {
        p50: m.get(name, "quantile=\"0.5\""),
        p99: m.get(name, "quantile=\"0.99\""),
        count: m.count(&format!("{name}_count")),
    }
}

#[derive(Deserialize)]
struct IpList {
    #[serde(default)]
    ip_addresses: Vec<IpRow>,
}

#[derive(Deserialize)]
struct IpRow {
    ip_address: String,
    seen_count: String,
}

#[derive(Deserialize)]
struct NumberList {
    #[serde(default)]
    called_numbers: Vec<NumberRow>,
}

#[derive(Deserialize)]
struct NumberRow {
    called_number: String,
    seen_count: String,
}

#[derive(Deserialize)]
struct EventList {
    #[serde(default)]
    events: Vec<EventRow>,
}

#[derive(Deserialize)]
struct EventRow {
    #[serde(default)]
    sip_user_agent: String,
}

/// The busiest source IPs of a `/ip-addresses` JSON body, by their `seen_count`.
pub fn ranked_ips(body: &str) -> Result<Vec<Ranked>, String> {
    let list: IpList = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(rank(list.ip_addresses.into_iter().map(|row| {
        (row.ip_address, row.seen_count.parse().unwrap_or(0))
    })))
}

/// The busiest called numbers of a `/numbers` JSON body, by their `seen_count`.
pub fn ranked_numbers(body: &str) -> Result<Vec<Ranked>, String> {
    let list: NumberList = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(rank(list.called_numbers.into_iter().map(|row| {
        (row.called_number, row.seen_count.parse().unwrap_or(0))
    })))
}

/// The user agents of an `/events` JSON body, counted.
pub fn ranked_user_agents(body: &str) -> Result<Vec<Ranked>, String> {
    let list: EventList = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(rank(
        list.events.into_iter().map(|row| (row.sip_user_agent, 1)),
    ))
}

/// Neutralises each text, adds up equal ones, and ranks: most first, then by text.
fn rank(rows: impl Iterator<Item = (String, u64)>) -> Vec<Ranked> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (text, count) in rows {
        let shown = neutralise(&text, limits::TOP_STRING_CHARS_MAX);
        let entry = counts.entry(shown).or_default();
        *entry = entry.saturating_add(count);
    }
    let mut ranked: Vec<Ranked> = counts
        .into_iter()
        .map(|(text, count)| Ranked { text, count })
        .collect();
    ranked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
    ranked.truncate(limits::TOP_LIST_ROWS_MAX);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_snapshot_counters_from_metrics() {
        let text = "sentrypeer_events_total 10\n\
            sentrypeer_writer_events_committed_total 9\n\
            sentrypeer_events_dropped_total 1\n\
            sentrypeer_writer_batch_events{quantile=\"0.5\"} 4\n\
            sentrypeer_writer_batch_events{quantile=\"0.99\"} 8\n\
            sentrypeer_writer_batch_events_count 3\n\
            sentrypeer_store_verified_ips 2\n\
            sentrypeer_shard_events_total{shard=\"0\"} 6\n\
            sentrypeer_shard_events_total{shard=\"1\"} 4\n\
            sentrypeer_sip_udp_kernel_drops_total 12\n";
        let counters = Counters::from_metrics(text);
        assert_eq!(counters.events, Some(10));
        assert_eq!(counters.stored, Some(9));
        assert_eq!(counters.dropped, Some(1));
        assert_eq!(counters.batch_events.p50, Some(4.0));
        assert_eq!(counters.batch_events.p99, Some(8.0));
        assert_eq!(counters.batch_events.count, Some(3));
        assert_eq!(counters.verified_ips, Some(2));
        assert_eq!(counters.webhook_lag_events, None, "no webhook: not shown");
        assert_eq!(
            counters.events_by_shard,
            [("0".to_owned(), 6), ("1".to_owned(), 4)]
        );
        assert_eq!(counters.kernel_dropped, Some(12));
        let bare = Counters::from_metrics("sentrypeer_events_total 1\n");
        assert!(bare.events_by_shard.is_empty() && bare.kernel_dropped.is_none());
    }

    #[test]
    fn top_snapshot_ranks_lists() {
        let ips = r#"{"ip_addresses_total":3,"ip_addresses":[
            {"ip_address":"127.0.0.2","seen_last":"x","seen_count":"2","verified":false},
            {"ip_address":"127.0.0.3","seen_last":"x","seen_count":"7","verified":true}]}"#;
        let ranked = ranked_ips(ips).unwrap();
        assert_eq!(ranked[0].text, "127.0.0.3");
        assert_eq!(ranked[0].count, 7);
        let numbers = r#"{"called_numbers_total":1,"called_numbers":[
            {"called_number":"9\u001b[2J0","seen_last":"x","seen_count":"5"}]}"#;
        let ranked = ranked_numbers(numbers).unwrap();
        assert_eq!(ranked[0].text, "9\u{FFFD}[2J0");
        let events = r#"{"events_total":3,"events":[{"sip_user_agent":"a\u0007"},
            {"sip_user_agent":"b"},{"sip_user_agent":"a\u0007"}]}"#;
        let ranked = ranked_user_agents(events).unwrap();
        assert_eq!(
            ranked,
            vec![
                Ranked {
                    text: "a\u{FFFD}".into(),
                    count: 2
                },
                Ranked {
                    text: "b".into(),
                    count: 1
                }
            ]
        );
        assert!(ranked_ips("not json").is_err());
    }
}
