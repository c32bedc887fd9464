//! The dashboard's JSON endpoints under `/dashboard/api/` (see `docs/openapi.yaml`): summary,
//! series, top, feed and the IP and number detail views. Each runs one LMDB read transaction on
//! the API's blocking pool; the bucket arithmetic is in [`crate::store::dashboard`].
//!
//! Never: writes to the store, reads more than a window's buckets, a feed page or a key's ring
//! of recent events, renders attacker-controlled text other than as JSON strings.

use std::net::IpAddr;

use hyper::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::route::{DashboardQuery, Window};
use crate::config::limits::{
    DASHBOARD_FEED_EVENTS_INITIAL, DASHBOARD_FEED_EVENTS_MAX, DASHBOARD_TOP_ITEMS_MAX,
};
use crate::event::Event;
use crate::store::dashboard::{self, Dimension, Granularity};
use crate::store::{Reader, Store, StoreError};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Answers one dashboard request at `now_ns`: the status and the JSON body.
pub(crate) fn serve(
    store: &Store,
    query: &DashboardQuery,
    now_ns: u64,
) -> Result<(StatusCode, String), StoreError> {
    let reader = store.read()?;
    let now_s = now_ns / NANOS_PER_SECOND;
    let body = match query {
        DashboardQuery::Summary => summary(&reader, now_ns)?,
        DashboardQuery::Series(window) => series(&reader, *window, now_s)?,
        DashboardQuery::Top(dimension, window) => top(&reader, *dimension, *window, now_s)?,
        DashboardQuery::Feed(after) => feed(&reader, *after)?,
        DashboardQuery::Ip(ip) => return ip_detail(&reader, *ip),
        DashboardQuery::Number(number) => return number_detail(&reader, number),
    };
    Ok((StatusCode::OK, body))
}

/// UTC nanoseconds as RFC 3339 (`2026-12-06T14:00:00Z`, fractional seconds when there are).
pub fn rfc3339(ns: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The first and last bucket start of `window` at `now_s`.
fn window_range(window: Window, now_s: u64) -> (u64, u64) {
    let granularity = window.granularity();
    let last = granularity.start_of(now_s);
    let first = last.saturating_sub((window.points() - 1) * granularity.seconds());
    (first, last)
}

fn events_in(reader: &Reader<'_>, window: Window, now_s: u64) -> Result<u64, StoreError> {
    let (first, last) = window_range(window, now_s);
    let buckets =
        reader.dashboard_buckets(window.granularity(), Dimension::Transport, first, last)?;
    Ok(buckets.iter().map(|(_, counts)| counts.total()).sum())
}

/// Whether the store holds counts of `dimension` in the last 90 days (enrichment is on).
fn has_counts(reader: &Reader<'_>, dimension: Dimension, now_s: u64) -> Result<bool, StoreError> {
    let (first, last) = window_range(Window::Quarter, now_s);
    let buckets = reader.dashboard_buckets(Granularity::Day, dimension, first, last)?;
    Ok(buckets.iter().any(|(_, counts)| counts.total() > 0))
}

fn summary(reader: &Reader<'_>, now_ns: u64) -> Result<String, StoreError> {
    let now_s = now_ns / NANOS_PER_SECOND;
    let totals = reader.totals()?;
    Ok(json!({
        "events": totals.events,
        "ip_addresses": totals.source_ips,
        "numbers": totals.called_numbers,
        "verified_ips": totals.verified_ips,
        "events_last_hour": events_in(reader, Window::Hour, now_s)?,
        "enrichment": {
            "country": has_counts(reader, Dimension::Country, now_s)?,
            "asn": has_counts(reader, Dimension::Asn, now_s)?,
        },
        "generated_at": rfc3339(now_ns),
    })
    .to_string())
}

fn series(reader: &Reader<'_>, window: Window, now_s: u64) -> Result<String, StoreError> {
    let granularity = window.granularity();
    let (first, last) = window_range(window, now_s);
    let buckets = reader.dashboard_buckets(granularity, Dimension::Transport, first, last)?;
    let mut stored = buckets.iter().peekable();
    let mut points = Vec::with_capacity(window.points() as usize);
    let mut start = first;
    while start <= last {
        let mut counts = [0u64; 3];
        while let Some((_, bucket)) = stored.next_if(|(s, _)| *s <= start) {
            for (key, count) in &bucket.keys {
                let slot = match key.as_slice() {
                    b"UDP" => 0,
                    b"TCP" => 1,
                    _ => 2,
                };
                if let Some(slot) = counts.get_mut(slot) {
                    *slot += count;
                }
            }
        }
        let [udp, tcp, tls] = counts;
        points.push(json!({
            "start": rfc3339(start.saturating_mul(NANOS_PER_SECOND)),
            "udp": udp,
            "tcp": tcp,
            "tls": tls,
        }));
        start += granularity.seconds();
    }
    Ok(json!({
        "window": window.name(),
        "bucket_seconds": granularity.seconds(),
        "points": points,
    })
    .to_string())
}

fn top(
    reader: &Reader<'_>,
    dimension: Dimension,
    window: Window,
    now_s: u64,
) -> Result<String, StoreError> {
    let (first, last) = window_range(window, now_s);
    let buckets = reader.dashboard_buckets(window.granularity(), dimension, first, last)?;
    let top = dashboard::top(
        dimension,
        buckets.iter().map(|(_, counts)| counts),
        DASHBOARD_TOP_ITEMS_MAX,
    );
    // Country and ASN count only enriched events; the others count every event of the window.
    let total = match dimension {
        Dimension::Country | Dimension::Asn | Dimension::Transport => top.counted,
        _ => events_in(reader, window, now_s)?,
    };
    let listed: u64 = top.items.iter().map(|item| item.count).sum();
    let items: Vec<Value> = top
        .items
        .iter()
        .map(|item| {
            let mut value = json!({ "key": item.key, "count": item.count });
            if let (Some(label), Some(object)) = (&item.label, value.as_object_mut()) {
                object.insert("label".into(), Value::String(label.clone()));
            }
            value
        })
        .collect();
    Ok(json!({
        "window": window.name(),
        "dimension": dimension.name(),
        "items": items,
        "other": total.saturating_sub(listed),
        "total": total,
    })
    .to_string())
}

fn feed(reader: &Reader<'_>, after: Option<u64>) -> Result<String, StoreError> {
    let limit = match after {
        Some(_) => DASHBOARD_FEED_EVENTS_MAX,
        None => DASHBOARD_FEED_EVENTS_INITIAL,
    };
    let events = reader.newest_events_after(after, limit)?;
    let cursor = events
        .first()
        .map(|(key, _)| *key)
        .or(after)
        .unwrap_or(0)
        .to_string();
    Ok(with_events(json!({ "cursor": cursor }), &events))
}

/// `head` (a JSON object) with an `events` array of JSON-log objects added.
fn with_events(head: Value, events: &[(u64, Event)]) -> String {
    let mut out = head.to_string().into_bytes();
    out.pop();
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"events\":[");
    super::render::write_events_tail(events, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn not_found(text: &str) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        json!({ "message": text }).to_string(),
    )
}

fn ip_detail(reader: &Reader<'_>, ip: IpAddr) -> Result<(StatusCode, String), StoreError> {
    let Some(seen) = reader.source_ip(ip)? else {
        return Ok(not_found("No bad actor found"));
    };
    let events = reader.recent_events_of_ip(ip)?;
    let mut head = json!({
        "key": seen.ip.to_string(),
        "first_seen": rfc3339(seen.first_seen_ns),
        "last_seen": rfc3339(seen.last_seen_ns),
        "count": seen.count,
        "verified": seen.verified_ns.is_some(),
    });
    // The newest enriched event names the source's country and network.
    let enriched = events.iter().find_map(|(_, e)| e.enrichment.as_deref());
    if let (Some(enrichment), Some(object)) = (enriched, head.as_object_mut()) {
        let country = enrichment.country.map_or_else(
            || "NOT_FOUND".to_owned(),
            |c| String::from_utf8_lossy(&c).into_owned(),
        );
        object.insert("source_country".into(), Value::String(country));
        object.insert(
            "source_asn".into(),
            enrichment
                .asn
                .map_or(Value::String("NOT_FOUND".into()), Value::from),
        );
        object.insert(
            "source_as_org".into(),
            Value::String(
                enrichment
                    .as_org
                    .as_deref()
                    .unwrap_or("NOT_FOUND")
                    .to_owned(),
            ),
        );
    }
    Ok((StatusCode::OK, with_events(head, &events)))
}

fn number_detail(reader: &Reader<'_>, number: &str) -> Result<(StatusCode, String), StoreError> {
    let Some(seen) = reader.called_number(number.as_bytes())? else {
        return Ok(not_found("No phone number found"));
    };
    let events = reader.recent_events_of_number(number.as_bytes())?;
    let head = json!({
        "key": seen.number,
        "first_seen": rfc3339(seen.first_seen_ns),
        "last_seen": rfc3339(seen.last_seen_ns),
        "count": seen.count,
    });
    Ok((StatusCode::OK, with_events(head, &events)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_whole_and_fractional_seconds() {
        assert_eq!(rfc3339(1_764_326_400_000_000_000), "2025-11-28T10:40:00Z");
        assert_eq!(
            rfc3339(1_764_326_400_000_000_123),
            "2025-11-28T10:40:00.000000123Z"
        );
    }

    #[test]
    fn windows_end_with_the_current_bucket() {
        let now = 1_764_326_400 + 59;
        assert_eq!(
            window_range(Window::Hour, now),
            (1_764_326_400 - 59 * 60, 1_764_326_400)
        );
        let (first, last) = window_range(Window::Week, now);
        assert_eq!((last - first) / 3_600 + 1, 168);
        let (first, last) = window_range(Window::Quarter, now);
        assert_eq!((last - first) / 86_400 + 1, 90);
    }

    #[test]
    fn events_are_appended_to_the_object() {
        let body = with_events(json!({ "cursor": "0" }), &[]);
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value, json!({ "cursor": "0", "events": [] }));
        let event = Event::new(&crate::event::EventParts {
            timestamp_ns: 1,
            uuid: uuid::Uuid::from_u128(1),
            node_id: uuid::Uuid::from_u128(2),
            transport: crate::event::Transport::Udp,
            collected_method: crate::event::CollectedMethod::Passive,
            source: "10.0.0.1:5060".parse().unwrap(),
            destination: "10.0.0.2:5060".parse().unwrap(),
            method: b"OPTIONS",
            called_number: None,
            user_agent: Some(b"<script>"),
            message: b"OPTIONS",
            source_verified: false,
            auth_username: None,
        });
        let body = with_events(json!({}), &[(1, event)]);
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["events"].as_array().unwrap().len(), 1);
    }
}
