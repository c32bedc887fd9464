//! The publishing side's pure core: local events in, message payloads out.
//!
//! Repeats of one (source IP, called number, method) within `window` become one entry with a
//! `count` (the first event's UUID, timestamp and fields; the SIP message text only when the
//! entry stayed a single event). Closed entries are packed, oldest first, into messages under
//! `P2P_MESSAGE_BYTES_MAX` and `P2P_ENTRIES_PER_MESSAGE_MAX`. [`Outbox::poll_message`] does not
//! remove anything: the caller publishes and then calls [`Outbox::commit`], so a failed publish
//! (no peers yet) keeps the entries. [`Outbox::published_through`] is the store key up to which
//! every local event has been published (the persisted `p2p` cursor).
//!
//! Never: does I/O, reads a clock, publishes an entry its own validator would reject, panics.
//!
//! Limits: `P2P_MESSAGE_BYTES_MAX`, `P2P_ENTRIES_PER_MESSAGE_MAX`, `P2P_FIELD_BYTES_MAX`,
//! `P2P_SIP_MESSAGE_BYTES_MAX` in [`crate::config::limits`].

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::entry::{MESSAGE_VERSION, WireEntry, truncate_to, validate_entry};
use crate::config::limits::{
    P2P_ENTRIES_PER_MESSAGE_MAX, P2P_FIELD_BYTES_MAX, P2P_MESSAGE_BYTES_MAX,
    P2P_SIP_MESSAGE_BYTES_MAX,
};
use crate::event::timestamp::format_timestamp;
use crate::event::{Event, display_ip};

type GroupKey = (IpAddr, Option<Box<[u8]>>, Box<[u8]>);

struct Pending {
    group: GroupKey,
    /// The store key of the first event in the entry.
    first_key: u64,
    opened_ns: u64,
    entry: WireEntry,
    /// The entry's JSON, once its window has closed.
    json: Option<String>,
}

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub payload: Vec<u8>,
    /// Entries in it (pass to [`Outbox::commit`]).
    pub entries: usize,
    /// Events they stand for (sum of counts).
    pub events: u64,
}

/// Pending entries (see the module doc).
pub struct Outbox {
    window_ns: u64,
    open: HashMap<GroupKey, u64>,
    queue: VecDeque<Pending>,
    /// Sequence number of `queue[0]`.
    base_seq: u64,
    last_read_key: u64,
    skipped: u64,
}

impl Outbox {
    /// An empty outbox; `read_key` is the store key already handled (the cursor).
    pub fn new(window: Duration, read_key: u64) -> Self {
        Self {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            open: HashMap::new(),
            queue: VecDeque::new(),
            base_seq: 0,
            last_read_key: read_key,
            skipped: 0,
        }
    }

    /// Entries pending.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Local events that could not be shared (a field the protocol does not allow).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Notes that the store event `key` was read but is not ours (nothing to publish).
    pub fn handle_skip(&mut self, key: u64) {
        self.last_read_key = self.last_read_key.max(key);
    }

    /// Adds the local event stored under `key` at time `now_ns` (wall clock).
    pub fn handle_event(&mut self, key: u64, event: &Event, now_ns: u64) {
        self.last_read_key = self.last_read_key.max(key);
        let group: GroupKey = (
            display_ip(event.source),
            event.called_number().map(Box::from),
            Box::from(event.method()),
        );
        if let Some(&seq) = self.open.get(&group)
            && let Some(pending) = self
                .queue
                .get_mut(usize::try_from(seq.saturating_sub(self.base_seq)).unwrap_or(usize::MAX))
            && pending.json.is_none()
            && now_ns.saturating_sub(pending.opened_ns) < self.window_ns
        {
            pending.entry.count = pending.entry.count.saturating_add(1);
            pending.entry.sip_message = None;
            return;
        }
        let entry = wire_entry(event);
        // Our own validator (with a nil "own" id, which no entry can carry) is the contract.
        if validate_entry(&entry, Uuid::nil(), now_ns).is_err() {
            self.skipped += 1;
            return;
        }
        let seq = self.base_seq + self.queue.len() as u64;
        self.open.insert(group.clone(), seq);
        self.queue.push_back(Pending {
            group,
            first_key: key,
            opened_ns: now_ns,
            entry,
            json: None,
        });
    }

    /// The next message of entries whose window has closed by `now_ns`, without removing them.
    pub fn poll_message(&mut self, now_ns: u64) -> Option<Batch> {
        const HEAD: &str = "{\"v\":";
        let head = format!("{HEAD}{MESSAGE_VERSION},\"entries\":[");
        let mut payload = head.into_bytes();
        let mut entries = 0;
        let mut events = 0u64;
        for pending in &mut self.queue {
            if entries >= P2P_ENTRIES_PER_MESSAGE_MAX {
                break;
            }
            if pending.json.is_none() {
                if now_ns.saturating_sub(pending.opened_ns) < self.window_ns {
                    break;
                }
                pending.json = Some(serde_json::to_string(&pending.entry).unwrap_or_default());
            }
            let json = pending.json.as_deref().unwrap_or_default();
            // ',' or nothing, the entry, then "]}".
            if payload.len() + 1 + json.len() + 2 > P2P_MESSAGE_BYTES_MAX {
                break;
            }
            if entries > 0 {
                payload.push(b',');
            }
            payload.extend_from_slice(json.as_bytes());
            entries += 1;
            events = events.saturating_add(pending.entry.count);
        }
        if entries == 0 {
            return None;
        }
        payload.extend_from_slice(b"]}");
        Some(Batch {
            payload,
            entries,
            events,
        })
    }

    /// Removes the first `entries` entries (after a successful publish).
    pub fn commit(&mut self, entries: usize) {
        for _ in 0..entries {
            let Some(pending) = self.queue.pop_front() else {
                break;
            };
            if self.open.get(&pending.group) == Some(&self.base_seq) {
                self.open.remove(&pending.group);
            }
            self.base_seq += 1;
        }
    }

    /// Every local event with a store key up to this one has been published (or skipped).
    pub fn published_through(&self) -> u64 {
        match self.queue.front() {
            Some(pending) => pending.first_key.saturating_sub(1),
            None => self.last_read_key,
        }
    }
}

/// The wire form of one local event (fields capped to the protocol's limits).
fn wire_entry(event: &Event) -> WireEntry {
    let capped = |bytes: Option<&[u8]>| -> String {
        match bytes {
            None => crate::event::NOT_FOUND.to_owned(),
            Some(bytes) => {
                let mut text: String = String::from_utf8_lossy(bytes)
                    .chars()
                    .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                    .collect();
                truncate_to(&mut text, P2P_FIELD_BYTES_MAX);
                text
            }
        }
    };
    let mut message = event.message_text().into_owned();
    truncate_to(&mut message, P2P_SIP_MESSAGE_BYTES_MAX);
    let mut method = event.method_text().into_owned();
    truncate_to(&mut method, P2P_FIELD_BYTES_MAX);
    WireEntry {
        event_uuid: event.uuid.to_string(),
        created_by_node_id: event.node_id.to_string(),
        event_timestamp: format_timestamp(event.timestamp_ns),
        collected_method: event.collected_method.as_str().to_owned(),
        transport_type: event.transport.as_str().to_owned(),
        source_ip: display_ip(event.source).to_string(),
        destination_ip: display_ip(event.destination).to_string(),
        called_number: capped(event.called_number()),
        sip_method: method,
        sip_user_agent: capped(event.user_agent()),
        sip_message: (!message.is_empty()).then_some(message),
        count: 1,
        source_verified: event.source_verified,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::event::{CollectedMethod, EventParts, Transport};
    use crate::p2p::entry::parse_message;
    use std::net::SocketAddr;

    const NOW: u64 = 1_764_326_400_000_000_000;
    const SECOND: u64 = 1_000_000_000;

    fn event(ip: u8, number: &str, uuid: u128) -> Event {
        Event::new(&EventParts {
            timestamp_ns: NOW,
            uuid: Uuid::from_u128(uuid),
            node_id: Uuid::from_u128(7),
            transport: Transport::Udp,
            collected_method: CollectedMethod::Passive,
            source: SocketAddr::from(([192, 0, 2, ip], 5060)),
            destination: SocketAddr::from(([198, 51, 100, 1], 5060)),
            method: b"INVITE",
            called_number: Some(number.as_bytes()),
            user_agent: Some(b"friendly-scanner"),
            message: b"INVITE sip:100@x SIP/2.0\r\n\r\n",
            source_verified: false,
            auth_username: None,
        })
    }

    #[test]
    fn outbox_coalesces_within_window() {
        let mut outbox = Outbox::new(Duration::from_secs(1), 0);
        for key in 1..=10 {
            outbox.handle_event(key, &event(1, "100", u128::from(key)), NOW + key);
        }
        outbox.handle_event(11, &event(2, "100", 11), NOW + 11);
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.poll_message(NOW + 100), None, "window still open");
        let batch = outbox.poll_message(NOW + SECOND + 11).unwrap();
        assert_eq!((batch.entries, batch.events), (2, 11));
        let entries = parse_message(&batch.payload, Uuid::from_u128(99), NOW).unwrap();
        assert_eq!(entries[0].count, 10);
        assert_eq!(entries[0].message, None, "coalesced entries drop the text");
        assert_eq!(entries[0].uuid, Uuid::from_u128(1));
        assert!(entries[1].message.is_some());
        assert_eq!(outbox.published_through(), 0);
        outbox.commit(batch.entries);
        assert!(outbox.is_empty());
        assert_eq!(outbox.published_through(), 11);
    }

    #[test]
    fn outbox_new_window_after_expiry() {
        let mut outbox = Outbox::new(Duration::from_secs(1), 0);
        outbox.handle_event(1, &event(1, "100", 1), NOW);
        outbox.handle_event(2, &event(1, "100", 2), NOW + 2 * SECOND);
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn outbox_failed_publish_keeps_entries() {
        let mut outbox = Outbox::new(Duration::from_secs(1), 5);
        outbox.handle_event(6, &event(1, "100", 1), NOW);
        let first = outbox.poll_message(NOW + SECOND).unwrap();
        let again = outbox.poll_message(NOW + 2 * SECOND).unwrap();
        assert_eq!(first, again);
        assert_eq!(outbox.published_through(), 5);
    }

    #[test]
    fn outbox_splits_under_size_and_count_caps() {
        let mut outbox = Outbox::new(Duration::from_secs(1), 0);
        let mut key = 0;
        for ip in 0..=255u8 {
            for number in 0..4 {
                key += 1;
                outbox.handle_event(key, &event(ip, &number.to_string(), u128::from(key)), NOW);
            }
        }
        let total = outbox.len();
        let mut seen = 0;
        while let Some(batch) = outbox.poll_message(NOW + SECOND) {
            assert!(batch.payload.len() <= P2P_MESSAGE_BYTES_MAX);
            assert!(batch.entries <= P2P_ENTRIES_PER_MESSAGE_MAX);
            let parsed = parse_message(&batch.payload, Uuid::from_u128(99), NOW).unwrap();
            assert_eq!(parsed.len(), batch.entries);
            seen += batch.entries;
            outbox.commit(batch.entries);
        }
        assert_eq!(seen, total);
        assert_eq!(outbox.published_through(), key);
    }

    #[test]
    fn outbox_skips_unshareable() {
        let mut outbox = Outbox::new(Duration::from_secs(1), 0);
        let bad = Event::new(&EventParts {
            method: b"IN VITE",
            ..event(1, "1", 1).parts()
        });
        outbox.handle_event(1, &bad, NOW);
        assert_eq!((outbox.len(), outbox.skipped()), (0, 1));
        assert_eq!(outbox.published_through(), 1);
    }
}
