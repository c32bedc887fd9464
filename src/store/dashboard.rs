//! The dashboard's aggregates, pure part: time buckets (minute, hour, day), the dimensions they
//! count (transport, IP, number, user agent, method, country, ASN), a batch's counts, the
//! per-bucket value codec, merging under a cap with an "other" count, which buckets are kept,
//! the top keys of a window. (The per-key rings of recent event keys: [`super::ring_codec`].)
//!
//! The LMDB side is [`super::dashboard_table`]; the writer calls it once per batch.
//!
//! Never: does I/O, reads a clock (time is passed in), panics on any stored bytes, keeps more
//! than [`DASHBOARD_BUCKET_KEYS_MAX`] keys in a bucket value.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::fast::RandomState;

use crate::config::limits::{
    DASHBOARD_BUCKET_KEYS_MAX, DASHBOARD_DAY_BUCKETS_KEPT, DASHBOARD_HOUR_BUCKETS_KEPT,
    DASHBOARD_KEY_BYTES_MAX, DASHBOARD_MINUTE_BUCKETS_KEPT,
};
use crate::event::{Event, NOT_FOUND, display_ip};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Self; 3] = [Self::Minute, Self::Hour, Self::Day];

    /// Seconds per bucket.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    /// How long buckets of this width are kept.
    pub fn kept_seconds(self) -> u64 {
        let kept = match self {
            Self::Minute => DASHBOARD_MINUTE_BUCKETS_KEPT,
            Self::Hour => DASHBOARD_HOUR_BUCKETS_KEPT,
            Self::Day => DASHBOARD_DAY_BUCKETS_KEPT,
        };
        kept.as_secs()
    }

    /// The start (UTC seconds) of the bucket holding `seconds`.
    pub fn start_of(self, seconds: u64) -> u64 {
        seconds - seconds % self.seconds()
    }

    fn code(self) -> u8 {
        match self {
            Self::Minute => 0,
            Self::Hour => 1,
            Self::Day => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.code() == code)
    }
}

/// What a bucket counts events by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Transport,
    Ip,
    Number,
    UserAgent,
    Method,
    Country,
    Asn,
}

/// How many dimensions there are.
pub const DIMENSIONS: usize = 7;

impl Dimension {
    pub const ALL: [Self; DIMENSIONS] = [
        Self::Transport,
        Self::Ip,
        Self::Number,
        Self::UserAgent,
        Self::Method,
        Self::Country,
        Self::Asn,
    ];

    /// The API's name (`?dimension=`) and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Transport => "transport",
            Self::Ip => "ip",
            Self::Number => "number",
            Self::UserAgent => "user_agent",
            Self::Method => "method",
            Self::Country => "country",
            Self::Asn => "asn",
        }
    }

    /// Parses [`Self::name`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == text)
    }

    /// The position in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Transport => 0,
            Self::Ip => 1,
            Self::Number => 2,
            Self::UserAgent => 3,
            Self::Method => 4,
            Self::Country => 5,
            Self::Asn => 6,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// The LMDB key of one bucket's counts of one dimension: granularity, dimension, start (UTC
/// seconds, big-endian), so that one dimension's buckets are contiguous and in time order.
pub fn bucket_key(granularity: Granularity, dimension: Dimension, start_s: u64) -> [u8; 10] {
    let mut key = [0; 10];
    let (head, start) = key.split_at_mut(2);
    head.copy_from_slice(&[granularity.code(), dimension.index() as u8]);
    start.copy_from_slice(&start_s.to_be_bytes());
    key
}

/// Reads [`bucket_key`]'s bytes.
pub fn parse_bucket_key(key: &[u8]) -> Option<(Granularity, Dimension, u64)> {
    let (&[granularity, dimension], start) = key.split_first_chunk::<2>()?;
    let start = <[u8; 8]>::try_from(start).ok()?;
    Some((
        Granularity::from_code(granularity)?,
        Dimension::from_code(dimension)?,
        u64::from_be_bytes(start),
    ))
}

/// "Now" and the retention, passed in by the writer (or a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// UTC seconds.
    pub now_s: u64,
    /// `--retention-days` in seconds, if set.
    pub retention_s: Option<u64>,
}

impl Horizon {
    /// From UTC nanoseconds and a retention in nanoseconds.
    pub fn from_ns(now_ns: u64, retention_ns: Option<u64>) -> Self {
        Self {
            now_s: now_ns / NANOS_PER_SECOND,
            retention_s: retention_ns.map(|ns| ns / NANOS_PER_SECOND),
        }
    }

    /// Buckets of `granularity` starting before this are pruned (and not written).
    pub fn cutoff_s(&self, granularity: Granularity) -> u64 {
        let kept = granularity.kept_seconds();
        let kept = self.retention_s.map_or(kept, |r| kept.min(r));
        let cutoff = self.now_s.saturating_sub(kept);
        // A bucket is kept while any second of it is within the horizon.
        granularity.start_of(cutoff)
    }
}

/// One dimension's counts in one bucket: up to a cap of (key, count) pairs, largest first, and
/// the events of keys that did not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub keys: Vec<(Vec<u8>, u64)>,
    pub other: u64,
}

/// The first byte of every encoded [`Counts`].
const COUNTS_VERSION: u8 = 1;

impl Counts {
    /// Every event counted (listed keys and other).
    pub fn total(&self) -> u64 {
        self.keys
            .iter()
            .fold(self.other, |sum, (_, count)| sum.saturating_add(*count))
    }

    /// `version u8 | other u64 | n u16 | n x (count u64 | len u16 | key)`, big-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let n = self.keys.len().min(usize::from(u16::MAX));
        out.push(COUNTS_VERSION);
        out.extend_from_slice(&self.other.to_be_bytes());
        out.extend_from_slice(&(n as u16).to_be_bytes());
        for (key, count) in self.keys.iter().take(n) {
            let key = key.get(..usize::from(u16::MAX)).unwrap_or(key);
            out.extend_from_slice(&count.to_be_bytes());
            out.extend_from_slice(&(key.len() as u16).to_be_bytes());
            out.extend_from_slice(key);
        }
    }

    /// Reads [`Self::encode`]'s bytes exactly (`None` for anything else).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&[version], rest) = bytes.split_first_chunk::<1>()?;
        if version != COUNTS_VERSION {
            return None;
        }
        let (other, rest) = rest.split_first_chunk::<8>()?;
        let (n, mut rest) = rest.split_first_chunk::<2>()?;
        let n = usize::from(u16::from_be_bytes(*n));
        // Each pair needs at least 10 bytes: a corrupt count cannot make us allocate much.
        let mut keys = Vec::with_capacity(n.min(rest.len() / 10));
        for _ in 0..n {
            let (count, after) = rest.split_first_chunk::<8>()?;
            let (len, after) = after.split_first_chunk::<2>()?;
            let (key, after) = after.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
            keys.push((key.to_vec(), u64::from_be_bytes(*count)));
            rest = after;
        }
        rest.is_empty().then(|| Self {
            keys,
            other: u64::from_be_bytes(*other),
        })
    }

    /// Adds a batch's counts (`delta`, distinct keys) and `delta_other`, then keeps the `cap`
    /// largest keys (ties: smaller key first) and folds the rest into `other`. Returns how many
    /// keys were folded.
    pub fn merge(&mut self, delta: Vec<(Vec<u8>, u64)>, delta_other: u64, cap: usize) -> u64 {
        self.other = self.other.saturating_add(delta_other);
        let mut all: HashMap<Vec<u8>, u64, RandomState> = HashMap::with_capacity_and_hasher(
            self.keys.len() + delta.len(),
            RandomState::default(),
        );
        for (key, count) in self.keys.drain(..).chain(delta) {
            let slot = all.entry(key).or_default();
            *slot = slot.saturating_add(count);
        }
        let mut all: Vec<(Vec<u8>, u64)> = all.into_iter().collect();
        let folded = fold_beyond(&mut all, cap, &mut self.other);
        self.keys = all;
        folded
    }
}

/// Sorts `pairs` largest count first (ties: smaller key first), folds those beyond `cap` into
/// `other` and returns how many were folded.
fn fold_beyond(pairs: &mut Vec<(Vec<u8>, u64)>, cap: usize, other: &mut u64) -> u64 {
    pairs.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut folded = 0;
    for (_, count) in pairs.drain(cap.min(pairs.len())..) {
        *other = other.saturating_add(count);
        folded += 1;
    }
    folded
}

/// A key of a batch's counts, borrowed from its event where it can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyRef<'e> {
    Bytes(&'e [u8]),
    /// An IP address (4 or 16 bytes) or a country code.
    Inline([u8; 16], u8),
    /// `#`, the ASN big-endian, then the AS organisation.
    Asn(u32, &'e [u8]),
}

impl KeyRef<'_> {
    /// Calls `f` with the key's stored bytes (what [`Self::to_bytes`] returns), built on the
    /// stack for an ASN.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Self::Bytes(bytes) => f(bytes),
            Self::Inline(bytes, len) => f(bytes.get(..usize::from(*len)).unwrap_or_default()),
            Self::Asn(asn, org) => {
                let mut out = [0u8; 5 + DASHBOARD_KEY_BYTES_MAX];
                let len = (5 + org.len()).min(out.len());
                out[0] = b'#';
                out[1..5].copy_from_slice(&asn.to_be_bytes());
                if let Some(rest) = out.get_mut(5..len) {
                    rest.copy_from_slice(org.get(..len - 5).unwrap_or_default());
                }
                f(out.get(..len).unwrap_or_default())
            }
        }
    }

    /// Orders keys as their stored bytes order.
    fn cmp_bytes(&self, other: &Self) -> std::cmp::Ordering {
        self.with_bytes(|a| other.with_bytes(|b| a.cmp(b)))
    }

    fn to_bytes(self) -> Vec<u8> {
        match self {
            Self::Bytes(bytes) => bytes.to_vec(),
            Self::Inline(bytes, len) => bytes.get(..usize::from(len)).unwrap_or_default().to_vec(),
            Self::Asn(asn, org) => {
                let mut out = Vec::with_capacity(5 + org.len());
                out.push(b'#');
                out.extend_from_slice(&asn.to_be_bytes());
                out.extend_from_slice(org);
                out
            }
        }
    }
}

type DimensionCounts<'e> = HashMap<KeyRef<'e>, u64, RandomState>;

/// One batch's counts per minute bucket, before they are rolled up and merged into the store.
#[derive(Default)]
pub struct BatchCounts<'e> {
    minutes: HashMap<u64, Vec<DimensionCounts<'e>>, RandomState>,
    /// The batch's size, for the IP and number maps of the batch's first minute: a flood's batch
    /// brings thousands of distinct ones (growing the maps took a third of the counting). Later
    /// minutes (a batch of peers' events may span thousands) start small, so that a batch
    /// never reserves more than one such pair of maps.
    presize: usize,
}

/// One bucket's share of a batch: per dimension, distinct keys with their counts.
pub struct BucketDelta {
    pub granularity: Granularity,
    pub start_s: u64,
    /// Indexed by [`Dimension::index`].
    pub dimensions: Vec<DimensionDelta>,
}

/// One dimension's share of a batch in one bucket, already capped: at most
/// [`DASHBOARD_BUCKET_KEYS_MAX`] keys, the events of the keys beyond in `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimensionDelta {
    pub keys: Vec<(Vec<u8>, u64)>,
    pub other: u64,
    /// How many keys were folded into `other`.
    pub folded: u64,
}

impl From<Vec<(Vec<u8>, u64)>> for DimensionDelta {
    /// Caps distinct `keys` (largest counts kept, ties: smaller key).
    fn from(mut keys: Vec<(Vec<u8>, u64)>) -> Self {
        let mut other = 0;
        let mut folded = 0;
        if keys.len() > DASHBOARD_BUCKET_KEYS_MAX {
            folded = fold_beyond(&mut keys, DASHBOARD_BUCKET_KEYS_MAX, &mut other);
        }
        Self {
            keys,
            other,
            folded,
        }
    }
}

/// Caps a batch's distinct keys as [`DimensionDelta::from`] does, comparing the borrowed keys
/// so that only the kept ones are copied: a flood from thousands of sources costs a sort, not
/// thousands of allocations per bucket.
fn capped_delta(mut pairs: Vec<(KeyRef<'_>, u64)>) -> DimensionDelta {
    let mut other = 0u64;
    let mut folded = 0;
    if pairs.len() > DASHBOARD_BUCKET_KEYS_MAX {
        // A selection in linear time, then a sort of the kept keys only: sorting every distinct
        // key of a batch from 4,096 sources took 0.3 us per event.
        let order = |a: &(KeyRef<'_>, u64), b: &(KeyRef<'_>, u64)| {
            b.1.cmp(&a.1).then_with(|| a.0.cmp_bytes(&b.0))
        };
        pairs.select_nth_unstable_by(DASHBOARD_BUCKET_KEYS_MAX, order);
        for (_, count) in pairs.drain(DASHBOARD_BUCKET_KEYS_MAX..) {
            other = other.saturating_add(count);
            folded += 1;
        }
        pairs.sort_unstable_by(order);
    }
    DimensionDelta {
        keys: pairs.into_iter().map(|(k, c)| (k.to_bytes(), c)).collect(),
        other,
        folded,
    }
}

fn ip_bytes(ip: IpAddr) -> KeyRef<'static> {
    let mut bytes = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            KeyRef::Inline(bytes, 4)
        }
        IpAddr::V6(v6) => KeyRef::Inline(v6.octets(), 16),
    }
}

fn capped(bytes: &[u8]) -> &[u8] {
    bytes.get(..DASHBOARD_KEY_BYTES_MAX).unwrap_or(bytes)
}

/// The key `event` is counted under in `dimension` (`None`: not counted there).
fn key_of(event: &Event, dimension: Dimension) -> Option<KeyRef<'_>> {
    let not_found = KeyRef::Bytes(NOT_FOUND.as_bytes());
    match dimension {
        Dimension::Transport => Some(KeyRef::Bytes(event.transport.as_str().as_bytes())),
        Dimension::Ip => Some(ip_bytes(display_ip(event.source))),
        Dimension::Number => event
            .called_number()
            .filter(|n| !n.is_empty() && *n != NOT_FOUND.as_bytes())
            .map(|n| KeyRef::Bytes(capped(n))),
        Dimension::UserAgent => event
            .user_agent()
            .filter(|a| !a.is_empty())
            .map(|a| KeyRef::Bytes(capped(a))),
        Dimension::Method => Some(KeyRef::Bytes(capped(event.method()))),
        Dimension::Country => event.enrichment.as_ref().map(|e| match e.country {
            Some(code) => {
                let mut bytes = [0; 16];
                bytes[..2].copy_from_slice(&code);
                KeyRef::Inline(bytes, 2)
            }
            None => not_found,
        }),
        Dimension::Asn => event.enrichment.as_ref().map(|e| match e.asn {
            Some(asn) => KeyRef::Asn(asn, capped(e.as_org.as_deref().unwrap_or("").as_bytes())),
            None => not_found,
        }),
    }
}

impl<'e> BatchCounts<'e> {
    /// Counts for a batch of `events` events.
    pub fn for_batch(events: usize) -> Self {
        Self {
            minutes: HashMap::default(),
            presize: events,
        }
    }

    /// Counts one committed event.
    pub fn add(&mut self, event: &'e Event) {
        let minute = Granularity::Minute.start_of(event.timestamp_ns / NANOS_PER_SECOND);
        let presize = &mut self.presize;
        let dimensions = self.minutes.entry(minute).or_insert_with(|| {
            let capacity = std::mem::take(presize);
            Dimension::ALL
                .into_iter()
                .map(|dimension| match dimension {
                    Dimension::Ip | Dimension::Number => {
                        HashMap::with_capacity_and_hasher(capacity, RandomState::default())
                    }
                    _ => HashMap::default(),
                })
                .collect()
        });
        for (dimension, counts) in Dimension::ALL.into_iter().zip(dimensions.iter_mut()) {
            if let Some(key) = key_of(event, dimension) {
                *counts.entry(key).or_default() += 1;
            }
        }
    }

    /// The batch's counts per bucket of every granularity, in key order, without the buckets
    /// that `horizon` already prunes. A batch usually spans one minute, whose capped counts then
    /// serve its minute, hour and day buckets alike: one pass over its distinct keys in all.
    pub fn roll_up(self, horizon: &Horizon) -> Vec<BucketDelta> {
        let mut minutes: Vec<(u64, Vec<DimensionCounts<'e>>)> = self.minutes.into_iter().collect();
        minutes.sort_unstable_by_key(|(minute, _)| *minute);
        // The capped deltas of each set of minutes, computed once (index range into `minutes`).
        let mut computed: Vec<((usize, usize), Vec<DimensionDelta>)> = Vec::new();
        let mut out = Vec::new();
        for granularity in Granularity::ALL {
            let cutoff = horizon.cutoff_s(granularity);
            let mut first = 0;
            while let Some((minute, _)) = minutes.get(first) {
                let start = granularity.start_of(*minute);
                // Minutes are sorted, so a bucket's minutes are a run.
                let end = first
                    + minutes
                        .get(first..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|(m, _)| granularity.start_of(*m) == start)
                        .count();
                if start >= cutoff {
                    let run = (first, end);
                    let dimensions = match computed.iter().find(|(r, _)| *r == run) {
                        Some((_, dimensions)) => dimensions.clone(),
                        None => {
                            let dimensions =
                                run_deltas(minutes.get(first..end).unwrap_or_default());
                            computed.push((run, dimensions.clone()));
                            dimensions
                        }
                    };
                    out.push(BucketDelta {
                        granularity,
                        start_s: start,
                        dimensions,
                    });
                }
                first = end;
            }
        }
        out
    }
}

/// The capped per-dimension deltas of a run of minutes (one minute: its counts as they are).
fn run_deltas(run: &[(u64, Vec<DimensionCounts<'_>>)]) -> Vec<DimensionDelta> {
    (0..DIMENSIONS)
        .map(|index| {
            let mut maps = run.iter().filter_map(|(_, dims)| dims.get(index));
            let pairs: Vec<(KeyRef<'_>, u64)> = match (maps.next(), run.len()) {
                (Some(only), 1) => only.iter().map(|(k, c)| (*k, *c)).collect(),
                (Some(first), _) => {
                    let mut sum = first.clone();
                    for map in maps {
                        for (key, count) in map {
                            *sum.entry(*key).or_default() += count;
                        }
                    }
                    sum.into_iter().collect()
                }
                (None, _) => Vec::new(),
            };
            capped_delta(pairs)
        })
        .collect()
}

/// Merges one dimension's capped `delta` into the stored `old` value (`None`: no value yet or
/// one that does not decode), capped at [`DASHBOARD_BUCKET_KEYS_MAX`]. Returns the new value's
/// bytes in `out` and how many keys were folded into "other" (in the delta and in the merge).
pub fn merge_value(old: Option<&[u8]>, delta: DimensionDelta, out: &mut Vec<u8>) -> u64 {
    let mut counts = old.and_then(Counts::decode).unwrap_or_default();
    let folded = delta.folded + counts.merge(delta.keys, delta.other, DASHBOARD_BUCKET_KEYS_MAX);
    counts.encode(out);
    folded
}

/// One listed key of a window's top list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopItem {
    pub key: String,
    /// The AS organisation of an ASN, when known.
    pub label: Option<String>,
    pub count: u64,
}

/// The top keys of one dimension over some buckets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Top {
    pub items: Vec<TopItem>,
    /// Every event the buckets counted in this dimension (listed, not listed, other).
    pub counted: u64,
}

/// The text of a stored key: an IP address, an ASN number (with its organisation), or the bytes
/// as text (invalid UTF-8 replaced).
pub fn key_text(dimension: Dimension, key: &[u8]) -> (String, Option<String>) {
    match dimension {
        Dimension::Ip => match ip_from(key) {
            Some(ip) => (ip.to_string(), None),
            None => (String::from_utf8_lossy(key).into_owned(), None),
        },
        Dimension::Asn => match key.split_first() {
            Some((b'#', rest)) => match rest.split_first_chunk::<4>() {
                Some((asn, org)) => {
                    let org = String::from_utf8_lossy(org).into_owned();
                    (
                        u32::from_be_bytes(*asn).to_string(),
                        (!org.is_empty()).then_some(org),
                    )
                }
                None => (String::from_utf8_lossy(key).into_owned(), None),
            },
            _ => (String::from_utf8_lossy(key).into_owned(), None),
        },
        _ => (String::from_utf8_lossy(key).into_owned(), None),
    }
}

fn ip_from(key: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(key) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(key)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

/// The `limit` largest keys over `buckets` (count descending, then key ascending); keys with the
/// same text (an ASN under two organisation names) are one item.
pub fn top<'a>(
    dimension: Dimension,
    buckets: impl Iterator<Item = &'a Counts>,
    limit: usize,
) -> Top {
    let mut sums: HashMap<String, (u64, Option<String>), RandomState> = HashMap::default();
    let mut counted = 0u64;
    for counts in buckets {
        counted = counted.saturating_add(counts.total());
        for (key, count) in &counts.keys {
            let (text, label) = key_text(dimension, key);
            let slot = sums.entry(text).or_insert((0, None));
            slot.0 = slot.0.saturating_add(*count);
            if slot.1.is_none() {
                slot.1 = label;
            }
        }
    }
    let mut items: Vec<TopItem> = sums
        .into_iter()
        .map(|(key, (count, label))| TopItem { key, label, count })
        .collect();
    items.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    items.truncate(limit);
    Top { items, counted }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::{CollectedMethod, Enrichment, EventParts, Transport};

    fn event(seconds: u64, ip: &str, agent: &str, transport: Transport) -> Event {
        let source = std::net::SocketAddr::new(ip.parse().unwrap(), 5060);
        Event::new(&EventParts {
            timestamp_ns: seconds * NANOS_PER_SECOND + 5,
            uuid: uuid::Uuid::from_u128(1),
            node_id: uuid::Uuid::from_u128(2),
            transport,
            collected_method: CollectedMethod::Passive,
            source,
            destination: "10.0.0.9:5060".parse().unwrap(),
            method: b"OPTIONS",
            called_number: Some(b"100"),
            user_agent: Some(agent.as_bytes()),
            message: b"OPTIONS sip:100@x SIP/2.0\r\n\r\n",
            source_verified: false,
            auth_username: None,
        })
    }

    fn pairs(list: &[(&str, u64)]) -> Vec<(Vec<u8>, u64)> {
        list.iter()
            .map(|(k, c)| (k.as_bytes().to_vec(), *c))
            .collect()
    }

    #[test]
    fn buckets_start_on_their_boundary() {
        assert_eq!(Granularity::Minute.start_of(3_661), 3_660);
        assert_eq!(Granularity::Hour.start_of(3_661), 3_600);
        assert_eq!(Granularity::Day.start_of(86_400 + 5), 86_400);
        let key = bucket_key(Granularity::Hour, Dimension::Asn, 7_200);
        assert_eq!(
            parse_bucket_key(&key),
            Some((Granularity::Hour, Dimension::Asn, 7_200))
        );
        assert_eq!(parse_bucket_key(&key[..9]), None);
        assert!(
            bucket_key(Granularity::Minute, Dimension::Ip, 60)
                < bucket_key(Granularity::Minute, Dimension::Ip, 120)
        );
    }

    #[test]
    fn horizon_cutoffs_keep_and_retention() {
        let now = 100 * 86_400 + 1_234;
        let horizon = Horizon {
            now_s: now,
            retention_s: None,
        };
        assert_eq!(
            horizon.cutoff_s(Granularity::Minute),
            Granularity::Minute.start_of(now - 7_200)
        );
        assert_eq!(
            horizon.cutoff_s(Granularity::Hour),
            Granularity::Hour.start_of(now - 8 * 86_400)
        );
        assert_eq!(
            horizon.cutoff_s(Granularity::Day),
            Granularity::Day.start_of(now - 91 * 86_400)
        );
        let one_day = Horizon {
            now_s: now,
            retention_s: Some(86_400),
        };
        // The retention is shorter than the hour and day buckets are kept, not than the minutes.
        assert_eq!(
            one_day.cutoff_s(Granularity::Minute),
            horizon.cutoff_s(Granularity::Minute)
        );
        assert_eq!(
            one_day.cutoff_s(Granularity::Hour),
            Granularity::Hour.start_of(now - 86_400)
        );
        assert_eq!(one_day.cutoff_s(Granularity::Day), 99 * 86_400);
    }

    #[test]
    fn merge_caps_and_folds_into_other() {
        let mut counts = Counts::default();
        let folded = counts.merge(pairs(&[("a", 5), ("b", 1), ("c", 3)]), 0, 2);
        assert_eq!(folded, 1);
        assert_eq!(counts.keys, pairs(&[("a", 5), ("c", 3)]));
        assert_eq!(counts.other, 1);
        // A key that grows past a listed one takes its place; totals are kept.
        let folded = counts.merge(pairs(&[("b", 4), ("a", 1)]), 2, 2);
        assert_eq!(folded, 1);
        assert_eq!(counts.keys, pairs(&[("a", 6), ("b", 4)]));
        assert_eq!(counts.other, 1 + 2 + 3);
        assert_eq!(counts.total(), 5 + 1 + 3 + 4 + 1 + 2);
        // Ties: the smaller key is kept.
        let mut tie = Counts::default();
        tie.merge(pairs(&[("y", 1), ("x", 1)]), 0, 1);
        assert_eq!(tie.keys, pairs(&[("x", 1)]));
    }

    #[test]
    fn merge_value_caps_a_flood_of_keys() {
        let delta: Vec<(Vec<u8>, u64)> = (0..1_000u32)
            .map(|i| (i.to_be_bytes().to_vec(), u64::from(i % 7) + 1))
            .collect();
        let sum: u64 = delta.iter().map(|(_, c)| c).sum();
        let mut out = Vec::new();
        let folded = merge_value(None, delta.into(), &mut out);
        let counts = Counts::decode(&out).unwrap();
        assert_eq!(counts.keys.len(), DASHBOARD_BUCKET_KEYS_MAX);
        assert_eq!(folded, 1_000 - DASHBOARD_BUCKET_KEYS_MAX as u64);
        assert_eq!(counts.total(), sum);
        assert!(counts.keys.iter().all(|(_, c)| *c == 7));
        let again = merge_value(Some(&out), pairs(&[("new", 1)]).into(), &mut Vec::new());
        assert_eq!(again, 1);
    }

    /// Only a batch's first minute gets maps sized for the whole batch: a batch of peers' events
    /// spread over many minutes must not reserve a batch-sized map per minute.
    #[test]
    fn batch_counts_presize_one_minute_only() {
        let events: Vec<Event> = (0..500)
            .map(|i| event(1_000 * 86_400 + i * 60, "10.0.0.1", "agent", Transport::Udp))
            .collect();
        let mut batch = BatchCounts::for_batch(events.len());
        for event in &events {
            batch.add(event);
        }
        assert_eq!(batch.minutes.len(), 500);
        let reserved: usize = batch
            .minutes
            .values()
            .map(|dims| dims[Dimension::Ip.index()].capacity())
            .sum();
        // One map sized for the batch, the others for their one key (a batch-sized map per
        // minute would be about 500 x 896).
        assert!(reserved < 6 * 500, "IP maps reserve {reserved} entries");
        let sized = batch
            .minutes
            .values()
            .filter(|dims| dims[Dimension::Ip.index()].capacity() >= 500)
            .count();
        assert_eq!(sized, 1);
    }

    #[test]
    fn batch_counts_roll_up_per_granularity() {
        let base = 1_000 * 86_400;
        let events = [
            event(base + 10, "10.0.0.1", "agent-a", Transport::Udp),
            event(base + 20, "10.0.0.1", "agent-b", Transport::Tcp),
            event(base + 70, "2001:db8::1", "agent-a", Transport::Udp),
        ];
        let mut batch = BatchCounts::default();
        for event in &events {
            batch.add(event);
        }
        let horizon = Horizon {
            now_s: base + 100,
            retention_s: None,
        };
        let deltas = batch.roll_up(&horizon);
        let shape: Vec<_> = deltas.iter().map(|d| (d.granularity, d.start_s)).collect();
        assert_eq!(
            shape,
            [
                (Granularity::Minute, base),
                (Granularity::Minute, base + 60),
                (Granularity::Hour, base),
                (Granularity::Day, base),
            ]
        );
        let hour = &deltas[2].dimensions;
        let mut transports = hour[Dimension::Transport.index()].keys.clone();
        transports.sort();
        assert_eq!(transports, pairs(&[("TCP", 1), ("UDP", 2)]));
        let mut ips = hour[Dimension::Ip.index()].keys.clone();
        ips.sort();
        assert_eq!(ips[0], (vec![10, 0, 0, 1], 2));
        assert_eq!(ips[1].0.len(), 16);
        assert!(
            hour[Dimension::Country.index()].keys.is_empty(),
            "no enrichment: not counted"
        );
        // Two hours later the minutes are pruned and not written.
        let later = Horizon {
            now_s: base + 3 * 3_600,
            retention_s: None,
        };
        let mut batch = BatchCounts::default();
        batch.add(&events[0]);
        let deltas = batch.roll_up(&later);
        assert!(deltas.iter().all(|d| d.granularity != Granularity::Minute));
    }

    #[test]
    fn enrichment_keys_and_not_found() {
        let mut enriched = event(60, "10.0.0.1", "a", Transport::Tls);
        enriched.enrichment = Some(Box::new(Enrichment {
            country: Some(*b"NL"),
            asn: Some(64_500),
            as_org: Some("Example Org".into()),
        }));
        let mut miss = event(60, "10.0.0.2", "a", Transport::Tls);
        miss.enrichment = Some(Box::default());
        let mut batch = BatchCounts::default();
        batch.add(&enriched);
        batch.add(&miss);
        let deltas = batch.roll_up(&Horizon {
            now_s: 61,
            retention_s: None,
        });
        let minute = &deltas[0].dimensions;
        let mut countries = minute[Dimension::Country.index()].keys.clone();
        countries.sort();
        assert_eq!(countries, pairs(&[("NL", 1), ("NOT_FOUND", 1)]));
        let asns: Vec<_> = minute[Dimension::Asn.index()]
            .keys
            .iter()
            .map(|(key, _)| key_text(Dimension::Asn, key))
            .collect();
        assert!(asns.contains(&("64500".into(), Some("Example Org".into()))));
        assert!(asns.contains(&("NOT_FOUND".into(), None)));
    }

    #[test]
    fn top_sums_buckets_and_orders() {
        let first = Counts {
            keys: pairs(&[("b", 5), ("a", 2)]),
            other: 4,
        };
        let second = Counts {
            keys: pairs(&[("a", 3), ("c", 1)]),
            other: 0,
        };
        let top = top(Dimension::Method, [&first, &second].into_iter(), 2);
        assert_eq!(top.counted, 15);
        let keys: Vec<_> = top
            .items
            .iter()
            .map(|i| (i.key.as_str(), i.count))
            .collect();
        assert_eq!(keys, [("a", 5), ("b", 5)]);
    }

    fn counts_strategy() -> impl Strategy<Value = Counts> {
        (
            proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), any::<u64>()),
                0..20,
            ),
            any::<u64>(),
        )
            .prop_map(|(keys, other)| Counts { keys, other })
    }

    proptest! {
        #[test]
        fn counts_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(counts) = Counts::decode(&bytes) {
                let mut again = Vec::new();
                counts.encode(&mut again);
                prop_assert_eq!(again, bytes);
            }
        }

        #[test]
        fn counts_roundtrip(counts in counts_strategy()) {
            let mut bytes = Vec::new();
            counts.encode(&mut bytes);
            prop_assert_eq!(Counts::decode(&bytes), Some(counts));
        }

        /// Oracle: capping borrowed keys (the writer's path) keeps exactly what capping their
        /// copies does (the plain path), including ties broken by the stored bytes.
        #[test]
        fn capped_delta_matches_capping_copies(
            raw in proptest::collection::vec((0..3u8, proptest::collection::vec(any::<u8>(), 0..5), 0..3u32, 1..4u64), 0..400),
        ) {
            let mut seen = std::collections::HashSet::new();
            let mut borrowed = Vec::new();
            for (kind, bytes, asn, count) in &raw {
                let key = match kind {
                    0 => KeyRef::Bytes(bytes),
                    1 => {
                        let mut inline = [0; 16];
                        inline[..bytes.len()].copy_from_slice(bytes);
                        KeyRef::Inline(inline, bytes.len() as u8)
                    }
                    _ => KeyRef::Asn(*asn, bytes),
                };
                if seen.insert(key.to_bytes()) {
                    borrowed.push((key, *count));
                }
            }
            let copies: Vec<(Vec<u8>, u64)> = borrowed.iter().map(|(k, c)| (k.to_bytes(), *c)).collect();
            prop_assert_eq!(capped_delta(borrowed), DimensionDelta::from(copies));
        }

        #[test]
        fn merge_keeps_every_event(
            old in counts_strategy(),
            delta in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..4), 0..1_000u64), 0..200),
        ) {
            let old = Counts { other: old.other % 1_000_000, keys: old.keys.into_iter().map(|(k, c)| (k, c % 1_000)).collect() };
            let mut distinct: HashMap<Vec<u8>, u64> = HashMap::new();
            for (k, c) in delta { *distinct.entry(k).or_default() += c; }
            let delta: Vec<_> = distinct.into_iter().collect();
            let expected = old.total() + delta.iter().map(|(_, c)| c).sum::<u64>();
            let mut bytes = Vec::new();
            old.encode(&mut bytes);
            let mut out = Vec::new();
            merge_value(Some(&bytes), delta.into(), &mut out);
            let merged = Counts::decode(&out).unwrap();
            prop_assert!(merged.keys.len() <= DASHBOARD_BUCKET_KEYS_MAX);
            prop_assert_eq!(merged.total(), expected);
        }
    }
}
