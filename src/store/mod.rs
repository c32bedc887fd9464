//! The store: an encoder thread cuts the event channel into batches and compresses each event's
//! record, one writer thread commits each batch in one LMDB write transaction and announces it,
//! and an output thread then writes the JSON log and syslog; readers use LMDB read transactions.
//!
//! Main types: [`Store`] (a cheap handle on one LMDB environment: one file at `-f` plus its lock
//! file), [`Reader`] (one read transaction: lists, look-ups, events after a cursor, totals),
//! [`writer::spawn_writer`] (the writer thread, [`writer::WriterHandle`]) and [`codec`] (the
//! binary event record). [`commands`] implements `sentrypeer stats` and `export`.
//!
//! Tables: `events` (u64 big-endian key, monotonically increasing -> codec record), `event_uuid`
//! (uuid -> event key, for de-duplicating other nodes' events: events created by this node carry
//! fresh v4 UUIDs and are neither looked up nor indexed, so the P2P layer must drop received
//! events that claim this node's id), `source_ips` / `called_numbers` (key -> first seen,
//! last seen, count), `source_ips_by_last` / `called_numbers_by_last` ((last seen ns, key) -> empty,
//! for newest-first lists without a scan), `meta` (schema version, node id, next event key, the
//! zstd dictionary, delivery cursors `cursor/<name>`, each AS number's organisation `as_org/<asn>`, the newest event key in the dashboard's recent-event rings `dashboard_recent_through`). Counts come from LMDB's O(1) table stats.
//!
//! Concurrency: LMDB serialises write transactions; readers never block the writer. Growing the
//! map needs no transaction open in this process, so every [`Reader`] and [`Store::set_cursor`]
//! holds a shared lock that the writer takes exclusively only to grow the map. Hence: do not call
//! [`Store::set_cursor`] (or open a second [`Reader`]) on a thread that still holds a [`Reader`].
//!
//! Never: runs on a shard, holds a write transaction across blocking I/O, panics on a corrupt
//! record (a record that does not decode is skipped by readers).
//!
//! Limits: [`limits::STORE_MAP_BYTES_INITIAL`], [`limits::STORE_MAP_BYTES_MAX`],
//! [`limits::CALLED_NUMBER_KEY_BYTES_MAX`], [`limits::STORE_PRUNE_EVENTS_PER_TXN`].

pub mod codec;
pub mod commands;
mod cursor;
pub mod dashboard;
mod dashboard_table;
pub mod dictionary;
mod encoder;
pub mod log_cache;
mod outputs;
mod recent_rings;
pub mod ring_codec;
mod syslog;
#[cfg(test)]
mod test_events;
pub mod writer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, Weak};

use foldhash::fast::RandomState;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, PutFlags, RoTxn, WithoutTls};
use uuid::Uuid;
use zstd::zstd_safe::DDict;

use crate::config::StoreConfig;
use crate::config::limits;
use crate::event::{Event, NOT_FOUND, display_ip};

pub use cursor::{CommitCursor, PersistPolicy, ReadAfter};
pub use dashboard_table::Folded;
use recent_rings::{PendingRings, RingFlush};
pub use writer::{
    CommitWatch, WriterHandle, WriterMetrics, WriterOptions, spawn_writer, spawn_writer_with,
};

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

type Table = Database<'static, Bytes, Bytes>;

const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_NODE_ID: &[u8] = b"node_id";
const META_NEXT_EVENT_KEY: &[u8] = b"next_event_key";
const META_DICTIONARY: &[u8] = b"zstd_dictionary";
const META_CURSOR_PREFIX: &str = "cursor/";
/// The node's 32-byte secret for source proofs (`sip::proof`), made with the store.
const META_PROOF_SECRET: &[u8] = b"proof_secret";
/// How many source IPs are verified (a big-endian u64; absent means 0).
const META_VERIFIED_IPS: &[u8] = b"verified_ips";
/// `as_org/<AS number, u32 big-endian>` -> the organisation last looked up for it (UTF-8).
const META_AS_ORG_PREFIX: &[u8] = b"as_org/";

/// The id written into records compressed with the (one) trained dictionary.
pub(super) const DICTIONARY_ID: u32 = 1;

const TABLE_NAMES: [&str; 7] = [
    "events",
    "event_uuid",
    "source_ips",
    "called_numbers",
    "source_ips_by_last",
    "called_numbers_by_last",
    "meta",
];

/// Every table (LMDB named database) the store creates: its own, then the dashboard's.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLE_NAMES
        .into_iter()
        .chain(dashboard_table::DASH_TABLE_NAMES)
}

/// Errors of the store, its commands and the writer's start-up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}: {source}")]
    Open { path: PathBuf, source: heed::Error },
    #[error("no store at {0}")]
    Missing(PathBuf),
    #[error(
        "store {path} has schema version {found}, newer than this build supports ({supported}); \
         upgrade sentrypeer"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "store {path} has schema version {found}, older than this build supports ({supported}) \
         and there is no migration; export it and start a new store"
    )]
    SchemaTooOld {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store {path} is damaged: {what}")]
    Damaged { path: PathBuf, what: &'static str },
    #[error("store: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("corrupt event record: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write: {0}")]
    Output(#[from] std::io::Error),
    #[error("csv export: {0}")]
    Csv(#[from] csv::Error),
    #[error("sqlite export: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("export --format sqlite needs an output file (-o FILE)")]
    SqliteNeedsOutput,
    #[error("{0} already exists; not overwriting it")]
    OutputExists(PathBuf),
    #[error("cannot start the writer thread: {0}")]
    Spawn(std::io::Error),
}

/// How to open a store beyond [`StoreConfig`] (tests and tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The LMDB map size to start with (a multiple of the page size); it doubles when full.
    pub map_bytes_initial: usize,
    /// Open without write access (commands); the store must exist.
    pub read_only: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            map_bytes_initial: limits::STORE_MAP_BYTES_INITIAL,
            read_only: false,
        }
    }
}

/// The trained zstd dictionary, prepared for decompression.
struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    prepared: DDict<'static>,
}

struct Tables {
    events: Table,
    uuids: Table,
    ips: Table,
    numbers: Table,
    ips_by_last: Table,
    numbers_by_last: Table,
    meta: Table,
    /// The dashboard's tables (absent in a store opened read-only that predates them).
    dash: Option<dashboard_table::DashTables>,
}

struct Inner {
    env: Env<WithoutTls>,
    tables: Tables,
    node_id: Uuid,
    path: PathBuf,
    /// Shared by every open transaction except the writer's; taken exclusively to grow the map.
    resize_lock: RwLock<()>,
    dictionary: OnceLock<Dictionary>,
}

/// One open store (a cheap, clonable handle).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Stores open in this process, by canonical path: LMDB must not open one file twice in a
/// process, so a second `open` of the same file returns the same handle.
static OPEN_STORES: Mutex<Option<HashMap<PathBuf, Weak<Inner>>>> = Mutex::new(None);

/// One source IP's aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpSeen {
    pub ip: IpAddr,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub count: u64,
    /// When the IP first proved a two-way exchange (`None`: never).
    pub verified_ns: Option<u64>,
    /// Its enrichment when last seen with a database configured (`None`: never enriched).
    pub source: Option<SourceTag>,
}

/// A source IP's country and AS as last looked up (each `None` on a miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceTag {
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
}

/// One called number's aggregate (the number as text, invalid UTF-8 replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberSeen {
    pub number: String,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub count: u64,
}

/// Where the next page of a newest-first list starts (opaque).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor(Vec<u8>);

impl PageCursor {
    /// The cursor as lowercase hex, e.g. for a query string.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`Self::to_hex`]'s text.
    pub fn from_hex(text: &str) -> Option<Self> {
        if !text.len().is_multiple_of(2) || text.len() > 1024 {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()?;
        Some(Self(bytes))
    }
}

/// One page of a newest-first list; `next` is `Some` when more items follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageCursor>,
}

/// Counts kept by LMDB (no scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Raw events stored (after retention).
    pub events: u64,
    pub source_ips: u64,
    /// Distinct called numbers, `NOT_FOUND` excluded.
    pub called_numbers: u64,
    /// Source IPs that proved a two-way exchange.
    pub verified_ips: u64,
}

/// What a batch commit did with each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Stored under this key.
    Key(u64),
    /// Its UUID was already stored; skipped.
    Duplicate,
}

impl Store {
    /// Opens (creating if needed) the store at `config.db_file`.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Self::open_with(config, StoreOptions::default())
    }

    /// Opens with explicit [`StoreOptions`].
    pub fn open_with(config: &StoreConfig, options: StoreOptions) -> Result<Self, StoreError> {
        let path = canonical_path(&config.db_file)?;
        let mut registry = OPEN_STORES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let registry = registry.get_or_insert_with(HashMap::new);
        registry.retain(|_, weak| weak.strong_count() > 0);
        if let Some(inner) = registry.get(&path).and_then(Weak::upgrade) {
            return Ok(Self { inner });
        }
        let inner = Arc::new(open_inner(&path, config.no_sync, options)?);
        registry.insert(path, Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// This node's UUID: created with the store and kept.
    pub fn node_id(&self) -> Uuid {
        self.inner.node_id
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Starts a read transaction. Keep it short, and drop it before calling
    /// [`Self::set_cursor`] on the same thread.
    pub fn read(&self) -> Result<Reader<'_>, StoreError> {
        let mut resized = false;
        loop {
            let guard = self
                .inner
                .resize_lock
                .read()
                .unwrap_or_else(|p| p.into_inner());
            match self.inner.env.read_txn() {
                Ok(txn) => {
                    let unpacker = RefCell::new(None);
                    return Ok(Reader {
                        store: &self.inner,
                        txn,
                        unpacker,
                        _guard: guard,
                    });
                }
                Err(heed::Error::Mdb(heed::MdbError::MapResized)) if !resized => {
                    // Another process grew the map: adopt its size, once.
                    drop(guard);
                    self.adopt_map_size()?;
                    resized = true;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Sets the delivery cursor `name` (e.g. `webhook`, `p2p`) to `key` in its own small write
    /// transaction. Safe from any thread that holds no [`Reader`]; it may wait for a writer batch.
    pub fn set_cursor(&self, name: &str, key: u64) -> Result<(), StoreError> {
        let _guard = self
            .inner
            .resize_lock
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut txn = self.inner.env.write_txn()?;
        let meta_key = format!("{META_CURSOR_PREFIX}{name}");
        self.inner
            .tables
            .meta
            .put(&mut txn, meta_key.as_bytes(), &key.to_be_bytes())?;
        txn.commit()?;
        Ok(())
    }

    fn adopt_map_size(&self) -> Result<(), StoreError> {
        let _guard = self
            .inner
            .resize_lock
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // SAFETY: not an unsafe block of ours to justify beyond heed's contract: no transaction
        // of this process is open while we hold the resize lock exclusively (the writer thread
        // only resizes from the same place, between its own transactions).
        #[allow(unsafe_code)]
        unsafe { self.inner.env.resize(0) }?;
        Ok(())
    }

    /// Doubles the map size (up to the cap). Called by the writer between transactions.
    pub(crate) fn grow_map(&self) -> Result<usize, StoreError> {
        let _guard = self
            .inner
            .resize_lock
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.inner.env.info().map_size;
        let next = current.saturating_mul(2).min(limits::STORE_MAP_BYTES_MAX);
        if next <= current {
            return Err(StoreError::Lmdb(heed::Error::Mdb(heed::MdbError::MapFull)));
        }
        // SAFETY: see `adopt_map_size`: the exclusive resize lock excludes every transaction of
        // this process, and the writer calls this with its own transaction closed.
        #[allow(unsafe_code)]
        unsafe { self.inner.env.resize(next) }?;
        Ok(next)
    }

    /// The map size in bytes.
    pub fn map_bytes(&self) -> usize {
        self.inner.env.info().map_size
    }

    /// The dictionary bytes and id, if one was trained (writer start-up), read from `meta` when
    /// no reader has loaded it yet: a writer that missed it would train a second one.
    pub(crate) fn dictionary_bytes(&self) -> Result<Option<(u32, Vec<u8>)>, StoreError> {
        let reader = self.read()?;
        Ok(reader.load_dictionary().map(|d| (d.id, d.bytes.clone())))
    }

    /// Commits `events` in one write transaction; `stored` gets one entry per event. The
    /// committed events join `rings`, which are written too when `flush_rings` or full; returns
    /// which (written rings are the caller's to clear).
    pub(super) fn commit_batch(
        &self,
        batch: &mut encoder::Batch,
        stored: &mut Vec<Stored>,
        horizon: &dashboard::Horizon,
        folded: &mut Folded,
        rings: &mut PendingRings,
        flush_rings: bool,
    ) -> Result<RingFlush, heed::Error> {
        stored.clear();
        let tables = &self.inner.tables;
        let mut txn = self.inner.env.write_txn()?;
        let mut next_key = read_u64(tables.meta.get(&txn, META_NEXT_EVENT_KEY)?).unwrap_or(1);
        // Sightings are summed per key first, so a flood from a few scanners costs one
        // aggregate update per distinct key and batch, not one per event.
        // foldhash: SipHash was 2% of the sensor's CPU in a flood; a batch bounds each map.
        let mut ips: HashMap<IpKey, Aggregate, RandomState> = HashMap::default();
        let mut numbers: HashMap<&[u8], Aggregate, RandomState> = HashMap::default();
        let mut as_orgs: HashMap<u32, &str, RandomState> = HashMap::default();
        for event in &batch.events {
            // Our own events carry fresh v4 UUIDs: only other nodes' events can repeat.
            let foreign = event.node_id != self.inner.node_id;
            if foreign && tables.uuids.get(&txn, event.uuid.as_bytes())?.is_some() {
                stored.push(Stored::Duplicate);
                continue;
            }
            // Only our own proofs verify an IP here; a peer's flag stays on its event.
            let proof = !foreign && event.source_verified;
            let sighting = Aggregate::once(event.timestamp_ns, proof);
            let ip_sighting = sighting.tagged(event.enrichment.as_deref());
            note_as_org(&mut as_orgs, event);
            ips.entry(ip_key(display_ip(event.source)))
                .and_modify(|seen| *seen = seen.merge(ip_sighting))
                .or_insert(ip_sighting);
            if let Some(number) = number_key(event.called_number()) {
                numbers
                    .entry(number)
                    .and_modify(|seen| *seen = seen.merge(sighting))
                    .or_insert(sighting);
            }
            if foreign {
                tables
                    .uuids
                    .put(&mut txn, event.uuid.as_bytes(), &next_key.to_be_bytes())?;
            }
            stored.push(Stored::Key(next_key));
            next_key += 1;
        }
        let verified_since = bump_ips(tables, &mut txn, ips)?;
        put_as_orgs(tables, &mut txn, as_orgs)?;
        bump_numbers(tables, &mut txn, numbers)?;
        // Records last: the writer marks an event of an IP verified before it arrived.
        for (index, outcome) in stored.iter().enumerate() {
            let Stored::Key(key) = *outcome else {
                continue;
            };
            if !verified_since.is_empty() {
                mark_if_verified(batch, index, self.inner.node_id, &verified_since);
            }
            tables.events.put_with_flags(
                &mut txn,
                PutFlags::APPEND,
                &key.to_be_bytes(),
                batch.record(index),
            )?;
        }
        let mut flushed = RingFlush::Not;
        if let Some(dash) = &tables.dash {
            dashboard_table::apply(dash, &mut txn, batch, stored, horizon, folded)?;
            flushed = dashboard_table::add_recent(
                dash,
                tables.meta,
                &mut txn,
                batch,
                stored,
                rings,
                flush_rings,
            )?;
        }
        put_new_dictionary(tables.meta, &mut txn, batch.dictionary())?;
        tables
            .meta
            .put(&mut txn, META_NEXT_EVENT_KEY, &next_key.to_be_bytes())?;
        txn.commit()?;
        Ok(flushed)
    }

    /// The store's 32-byte secret for source proofs (made with the store).
    pub fn proof_secret(&self) -> Result<[u8; 32], StoreError> {
        let txn = self.inner.env.read_txn()?;
        let value = self.inner.tables.meta.get(&txn, META_PROOF_SECRET)?;
        value
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| StoreError::Damaged {
                path: self.inner.path.clone(),
                what: "no proof secret",
            })
    }

    /// Removes up to `count_max` of the oldest raw events whose timestamp is before
    /// `cutoff_ns` (and their UUID index entries), in one write transaction. Events are walked
    /// in key (arrival) order and the walk stops at the first newer one. Aggregates stay.
    pub(crate) fn prune_before(
        &self,
        cutoff_ns: u64,
        count_max: usize,
    ) -> Result<usize, heed::Error> {
        let tables = &self.inner.tables;
        let mut txn = self.inner.env.write_txn()?;
        // (key, UUID of an other node's event: only those are in the UUID index).
        let mut doomed: Vec<([u8; 8], Option<Uuid>)> = Vec::new();
        for entry in tables.events.iter(&txn)?.take(count_max) {
            let (key, value) = entry?;
            let Ok(header) = codec::decode_header(value) else {
                break;
            };
            let Ok(key) = <[u8; 8]>::try_from(key) else {
                break;
            };
            if header.timestamp_ns >= cutoff_ns {
                break;
            }
            doomed.push((key, (!header.local_node).then_some(header.uuid)));
        }
        for (key, uuid) in &doomed {
            tables.events.delete(&mut txn, key)?;
            if let Some(uuid) = uuid {
                tables.uuids.delete(&mut txn, uuid.as_bytes())?;
            }
        }
        txn.commit()?;
        Ok(doomed.len())
    }
}

/// How many rows ahead a sorted list page asks the CPU to load (see [`prefetch`]).
const LIST_PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to start loading the cache line at the start of `bytes` (a hint only: it reads
/// nothing into the program and changes no result).
#[inline(always)]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch instruction never faults and writes nothing; `bytes` is a live slice.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            bytes.as_ptr().cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// One read transaction over the store.
pub struct Reader<'s> {
    store: &'s Inner,
    txn: RoTxn<'s, WithoutTls>,
    unpacker: RefCell<Option<codec::Unpacker>>,
    _guard: RwLockReadGuard<'s, ()>,
}

impl Reader<'_> {
    /// Source IPs, newest `last_seen` first, at most `limit`, only those seen at or after
    /// `since_ns` (and verified, with `verified_only`), starting after `cursor`.
    pub fn source_ips(
        &self,
        since_ns: Option<u64>,
        verified_only: bool,
        limit: usize,
        cursor: Option<&PageCursor>,
    ) -> Result<Page<IpSeen>, StoreError> {
        self.source_ips_of(since_ns, verified_only, &|_| true, limit, cursor)
    }

    /// [`Self::source_ips`] of the IPs `wanted` accepts (e.g. `?country=`, `?asn=`).
    pub fn source_ips_of(
        &self,
        since_ns: Option<u64>,
        verified_only: bool,
        wanted: &dyn Fn(&IpSeen) -> bool,
        limit: usize,
        cursor: Option<&PageCursor>,
    ) -> Result<Page<IpSeen>, StoreError> {
        let tables = &self.store.tables;
        self.newest_first(
            tables.ips_by_last,
            tables.ips,
            since_ns,
            limit,
            cursor,
            |key, agg| {
                if verified_only && agg.verified == 0 {
                    return None;
                }
                Some(ip_seen(ip_from_key(key)?, agg)).filter(|seen| wanted(seen))
            },
        )
    }

    /// Called numbers (never `NOT_FOUND`), like [`Self::source_ips`].
    pub fn called_numbers(
        &self,
        since_ns: Option<u64>,
        limit: usize,
        cursor: Option<&PageCursor>,
    ) -> Result<Page<NumberSeen>, StoreError> {
        let tables = &self.store.tables;
        self.newest_first(
            tables.numbers_by_last,
            tables.numbers,
            since_ns,
            limit,
            cursor,
            |k, a| {
                Some(NumberSeen {
                    number: String::from_utf8_lossy(k).into_owned(),
                    first_seen_ns: a.first,
                    last_seen_ns: a.last,
                    count: a.count,
                })
            },
        )
    }

    /// One source IP (an IPv4-mapped IPv6 address is looked up as IPv4).
    pub fn source_ip(&self, ip: IpAddr) -> Result<Option<IpSeen>, StoreError> {
        let ip = canonical_ip(ip);
        let value = self
            .store
            .tables
            .ips
            .get(&self.txn, ip_key(ip).as_slice())?;
        Ok(value
            .and_then(Aggregate::decode)
            .map(|agg| ip_seen(ip, agg)))
    }

    /// One called number.
    pub fn called_number(&self, number: &[u8]) -> Result<Option<NumberSeen>, StoreError> {
        let Some(key) = number_key(Some(number)) else {
            return Ok(None);
        };
        let value = self.store.tables.numbers.get(&self.txn, key)?;
        Ok(value.and_then(Aggregate::decode).map(|agg| NumberSeen {
            number: String::from_utf8_lossy(key).into_owned(),
            first_seen_ns: agg.first,
            last_seen_ns: agg.last,
            count: agg.count,
        }))
    }

    /// The newest events first (by key, i.e. arrival order), at most `limit`, only those whose
    /// source was verified with `verified_only`; with `since_ns` the walk stops at the first
    /// event older than it.
    pub fn recent_events(
        &self,
        since_ns: Option<u64>,
        verified_only: bool,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        self.recent_events_of(since_ns, verified_only, &|_| true, limit)
    }

    /// [`Self::recent_events`] of the events whose record header `wanted` accepts (e.g. the
    /// source's country and AS, `?country=`/`?asn=`); the others are skipped undecoded.
    pub fn recent_events_of(
        &self,
        since_ns: Option<u64>,
        verified_only: bool,
        wanted: &dyn Fn(&codec::Header) -> bool,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.store.tables.events.rev_iter(&self.txn)? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            // The flag is in the fixed header: unverified events are skipped undecoded.
            if let Some(header) = codec::decode_header(value)
                .ok()
                .filter(|header| (verified_only && !header.source_verified) || !wanted(header))
            {
                if since_ns.is_some_and(|since| header.timestamp_ns < since) {
                    break;
                }
                continue;
            }
            let Some((key, event)) = self.decode_entry(key, value) else {
                continue;
            };
            if since_ns.is_some_and(|since| event.timestamp_ns < since) {
                break;
            }
            out.push((key, event));
        }
        Ok(out)
    }

    /// Up to `limit` events with a key greater than `key`, oldest first (delivery cursors).
    pub fn events_after(&self, key: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        let Some(start) = key.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = start.to_be_bytes();
        let range = (Bound::Included(&start[..]), Bound::Unbounded);
        let mut out = Vec::new();
        for entry in self.store.tables.events.range(&self.txn, &range)? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            if let Some(decoded) = self.decode_entry(key, value) {
                out.push(decoded);
            }
        }
        Ok(out)
    }

    /// The oldest and newest stored events.
    pub fn first_and_last_event(&self) -> Result<Option<(Event, Event)>, StoreError> {
        let events = self.store.tables.events;
        let first = events
            .first(&self.txn)?
            .and_then(|(k, v)| self.decode_entry(k, v));
        let last = events
            .last(&self.txn)?
            .and_then(|(k, v)| self.decode_entry(k, v));
        Ok(first.map(|(_, e)| e).zip(last.map(|(_, e)| e)))
    }

    /// Whether an event of another node with this UUID is stored (only other nodes' events are
    /// indexed by UUID; the NATS hub acknowledges a message once this is true).
    pub fn has_foreign_uuid(&self, uuid: &Uuid) -> Result<bool, StoreError> {
        let found = self.store.tables.uuids.get(&self.txn, uuid.as_bytes())?;
        Ok(found.is_some())
    }

    /// The key of the last committed event (0 before the first).
    pub fn last_key(&self) -> Result<u64, StoreError> {
        let next = read_u64(self.store.tables.meta.get(&self.txn, META_NEXT_EVENT_KEY)?);
        Ok(next.unwrap_or(1).saturating_sub(1))
    }

    /// Events, source IPs and called numbers (O(1): LMDB keeps the counts).
    pub fn totals(&self) -> Result<Totals, StoreError> {
        let tables = &self.store.tables;
        Ok(Totals {
            events: tables.events.len(&self.txn)?,
            source_ips: tables.ips.len(&self.txn)?,
            called_numbers: tables.numbers.len(&self.txn)?,
            verified_ips: read_u64(tables.meta.get(&self.txn, META_VERIFIED_IPS)?).unwrap_or(0),
        })
    }

    /// The organisation of AS `asn` as last looked up (`--asn-db`), if any.
    pub fn as_org(&self, asn: u32) -> Result<Option<String>, StoreError> {
        let value = self.store.tables.meta.get(&self.txn, &as_org_key(asn))?;
        Ok(value.map(|v| String::from_utf8_lossy(v).into_owned()))
    }

    /// The delivery cursor `name` (0 when never set).
    pub fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let meta_key = format!("{META_CURSOR_PREFIX}{name}");
        Ok(read_u64(self.store.tables.meta.get(&self.txn, meta_key.as_bytes())?).unwrap_or(0))
    }

    /// A page of aggregates, newest `last` first: by walking the `by_last` index (a look-up
    /// per item), or, when the table holds at most [`limits::API_LIST_SCAN_FACTOR`] times the
    /// page and no `since_ns` stops the walk early, by one pass over the table in key order and
    /// a sort, which returns the same page. A full list of 100k called numbers spent about half
    /// its time in the look-ups.
    fn newest_first<T>(
        &self,
        by_last: Table,
        aggregates: Table,
        since_ns: Option<u64>,
        limit: usize,
        cursor: Option<&PageCursor>,
        build: impl Fn(&[u8], Aggregate) -> Option<T>,
    ) -> Result<Page<T>, StoreError> {
        let entries = aggregates.len(&self.txn)?;
        let small = entries
            <= u64::try_from(limit.saturating_mul(limits::API_LIST_SCAN_FACTOR))
                .unwrap_or(u64::MAX);
        if since_ns.is_none() && small {
            let entries = usize::try_from(entries).unwrap_or(usize::MAX);
            self.newest_first_by_scan(aggregates, entries, limit, cursor, build)
        } else {
            self.newest_first_by_index(by_last, aggregates, since_ns, limit, cursor, build)
        }
    }

    /// [`Self::newest_first`] by one pass over `aggregates` and a sort by index key
    /// (`last` big-endian, then the key), descending, below `cursor`. The pass meets the keys in
    /// ascending order, so a row's position stands in for its key: the sort orders 16-byte
    /// integers (`last`, then position), not rows.
    /// `entries` (the table's length, at most `limit` x [`limits::API_LIST_SCAN_FACTOR`]) sizes
    /// the buffers once.
    fn newest_first_by_scan<T>(
        &self,
        aggregates: Table,
        entries: usize,
        limit: usize,
        cursor: Option<&PageCursor>,
        build: impl Fn(&[u8], Aggregate) -> Option<T>,
    ) -> Result<Page<T>, StoreError> {
        let mut rows: Vec<(&[u8], &[u8])> = Vec::with_capacity(entries);
        let mut order: Vec<u128> = Vec::with_capacity(entries);
        for entry in aggregates.iter(&self.txn)? {
            let (key, value) = entry?;
            let Some(aggregate) = Aggregate::decode(value) else {
                continue;
            };
            let below_cursor = cursor.is_none_or(|cursor| {
                let index_key = aggregate.last.to_be_bytes();
                index_key.iter().chain(key).lt(cursor.0.iter())
            });
            if below_cursor {
                order.push(u128::from(aggregate.last) << 64 | rows.len() as u128);
                rows.push((key, value));
            }
        }
        order.sort_unstable_by(|a, b| b.cmp(a));
        let row_of = |position: u128| {
            usize::try_from(position & u128::from(u64::MAX))
                .ok()
                .and_then(|index| rows.get(index))
        };
        let mut items = Vec::with_capacity(limit.min(order.len()));
        let mut last_built: Option<(u64, &[u8])> = None;
        let mut more = false;
        for (at, &position) in order.iter().enumerate() {
            // Sorted order visits the map's pages at random: start loading a later row's entry
            // while this one is built.
            if let Some(&(key, value)) = order
                .get(at + LIST_PREFETCH_AHEAD)
                .and_then(|&ahead| row_of(ahead))
            {
                prefetch(key);
                prefetch(value);
            }
            let Some((key, aggregate)) =
                row_of(position).and_then(|&(key, value)| Some((key, Aggregate::decode(value)?)))
            else {
                continue;
            };
            if items.len() >= limit {
                more = true;
                break;
            }
            if let Some(item) = build(key, aggregate) {
                items.push(item);
                last_built = Some((aggregate.last, key));
            }
        }
        let next = more
            .then_some(last_built)
            .flatten()
            .map(|(last, key)| PageCursor([&last.to_be_bytes()[..], key].concat()));
        Ok(Page { items, next })
    }

    /// [`Self::newest_first`] by walking `by_last` from the newest, a look-up per entry.
    fn newest_first_by_index<T>(
        &self,
        by_last: Table,
        aggregates: Table,
        since_ns: Option<u64>,
        limit: usize,
        cursor: Option<&PageCursor>,
        build: impl Fn(&[u8], Aggregate) -> Option<T>,
    ) -> Result<Page<T>, StoreError> {
        let upper = match cursor {
            Some(cursor) => Bound::Excluded(cursor.0.as_slice()),
            None => Bound::Unbounded,
        };
        let range = (Bound::Unbounded, upper);
        let mut items = Vec::new();
        let mut last_index_key: Option<&[u8]> = None;
        let mut more = false;
        for entry in by_last.rev_range(&self.txn, &range)? {
            let (index_key, _) = entry?;
            let Some((last_bytes, key)) = index_key.split_first_chunk::<8>() else {
                continue;
            };
            if since_ns.is_some_and(|since| u64::from_be_bytes(*last_bytes) < since) {
                break;
            }
            if items.len() >= limit {
                more = true;
                break;
            }
            let Some(aggregate) = aggregates.get(&self.txn, key)?.and_then(Aggregate::decode)
            else {
                continue;
            };
            if let Some(item) = build(key, aggregate) {
                items.push(item);
                last_index_key = Some(index_key);
            }
        }
        let next = if more {
            last_index_key.map(|k| PageCursor(k.to_vec()))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    fn decode_entry(&self, key: &[u8], value: &[u8]) -> Option<(u64, Event)> {
        let key = u64::from_be_bytes(<[u8; 8]>::try_from(key).ok()?);
        let mut unpacker = self.unpacker.borrow_mut();
        let unpacker = unpacker.get_or_insert_with(codec::Unpacker::new);
        let header = codec::decode_header(value).ok()?;
        let dictionary = match header.dictionary_id {
            Some(_) => self.load_dictionary(),
            None => None,
        };
        let context = codec::Context {
            local_node: Some(self.store.node_id),
            dictionary: dictionary.map(|d| (d.id, &d.prepared)),
        };
        codec::decode_with(value, &context, unpacker)
            .ok()
            .map(|event| (key, event))
    }

    fn load_dictionary(&self) -> Option<&Dictionary> {
        if let Some(dictionary) = self.store.dictionary.get() {
            return Some(dictionary);
        }
        let value = self
            .store
            .tables
            .meta
            .get(&self.txn, META_DICTIONARY)
            .ok()??;
        let loaded = parse_dictionary(value)?;
        let _ = self.store.dictionary.set(loaded);
        self.store.dictionary.get()
    }
}

fn ip_seen(ip: IpAddr, agg: Aggregate) -> IpSeen {
    IpSeen {
        ip,
        first_seen_ns: agg.first,
        last_seen_ns: agg.last,
        count: agg.count,
        verified_ns: (agg.verified != 0).then_some(agg.verified),
        source: agg.source,
    }
}

/// First seen, last seen, count: 24 bytes big-endian; then, for a verified source IP, when it
/// was first verified (8 more bytes; absent means never, so older stores read unchanged); then,
/// for an enriched source IP, its [`SourceTag`] as last seen (7 more bytes: present u8 (bit 0
/// country, bit 1 ASN), country [2], ASN u32; the verified time is then 0 when never).
#[derive(Debug, Clone, Copy)]
struct Aggregate {
    first: u64,
    last: u64,
    count: u64,
    /// First verified at (UTC ns); 0: never.
    verified: u64,
    /// Source IPs only: the enrichment of the newest sighting that had one.
    source: Option<SourceTag>,
}

impl Aggregate {
    /// One sighting at `timestamp_ns`, a proof of the source when `proof`.
    fn once(timestamp_ns: u64, proof: bool) -> Self {
        Self {
            first: timestamp_ns,
            last: timestamp_ns,
            count: 1,
            verified: if proof { timestamp_ns.max(1) } else { 0 },
            source: None,
        }
    }

    /// This sighting with the event's enrichment (source IPs).
    fn tagged(self, enrichment: Option<&crate::event::Enrichment>) -> Self {
        Self {
            source: enrichment.map(|e| SourceTag {
                country: e.country,
                asn: e.asn,
            }),
            ..self
        }
    }

    /// Both sets of sightings together.
    fn merge(self, other: Self) -> Self {
        let verified = match (self.verified, other.verified) {
            (0, other) => other,
            (this, 0) => this,
            (this, other) => this.min(other),
        };
        let source = match (self.source, other.source) {
            (Some(this), Some(that)) => Some(if other.last >= self.last { that } else { this }),
            (this, that) => this.or(that),
        };
        Self {
            first: self.first.min(other.first),
            last: self.last.max(other.last),
            count: self.count.saturating_add(other.count),
            verified,
            source,
        }
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (first, rest) = bytes.split_first_chunk::<8>()?;
        let (last, rest) = rest.split_first_chunk::<8>()?;
        let (count, rest) = rest.split_first_chunk::<8>()?;
        let (verified, rest) = rest
            .split_first_chunk::<8>()
            .map_or((0, &[][..]), |(v, rest)| (u64::from_be_bytes(*v), rest));
        let source = rest.split_first_chunk::<7>().map(|(tag, _)| {
            let [present, c0, c1, a0, a1, a2, a3] = *tag;
            SourceTag {
                country: (present & 1 != 0).then_some([c0, c1]),
                asn: (present & 2 != 0).then_some(u32::from_be_bytes([a0, a1, a2, a3])),
            }
        });
        Some(Self {
            first: u64::from_be_bytes(*first),
            last: u64::from_be_bytes(*last),
            count: u64::from_be_bytes(*count),
            verified,
            source,
        })
    }

    /// The value bytes: 24, 32 with a verified time, 39 with a source tag.
    fn encode(&self, out: &mut [u8; 39]) -> usize {
        out[..8].copy_from_slice(&self.first.to_be_bytes());
        out[8..16].copy_from_slice(&self.last.to_be_bytes());
        out[16..24].copy_from_slice(&self.count.to_be_bytes());
        if self.verified == 0 && self.source.is_none() {
            return 24;
        }
        out[24..32].copy_from_slice(&self.verified.to_be_bytes());
        let Some(tag) = self.source else {
            return 32;
        };
        out[32] = u8::from(tag.country.is_some()) | (u8::from(tag.asn.is_some()) << 1);
        out[33..35].copy_from_slice(&tag.country.unwrap_or_default());
        out[35..39].copy_from_slice(&tag.asn.unwrap_or_default().to_be_bytes());
        39
    }
}

/// Adds a batch's sightings of `key` to its aggregate, moving its newest-first index entry.
/// Returns the aggregate before and after.
fn bump(
    aggregates: Table,
    by_last: Table,
    txn: &mut heed::RwTxn<'_>,
    key: &[u8],
    seen: Aggregate,
) -> Result<(Option<Aggregate>, Aggregate), heed::Error> {
    let old = aggregates.get(txn, key)?.and_then(Aggregate::decode);
    let new = old.map_or(seen, |old| old.merge(seen));
    let mut index_key = Vec::with_capacity(8 + key.len());
    if let Some(old) = old.filter(|old| old.last != new.last) {
        index_key.extend_from_slice(&old.last.to_be_bytes());
        index_key.extend_from_slice(key);
        by_last.delete(txn, &index_key)?;
    }
    if old.is_none_or(|old| old.last != new.last) {
        index_key.clear();
        index_key.extend_from_slice(&new.last.to_be_bytes());
        index_key.extend_from_slice(key);
        by_last.put(txn, &index_key, &[])?;
    }
    let mut value = [0; 39];
    let value_bytes = new.encode(&mut value);
    aggregates.put(txn, key, value.get(..value_bytes).unwrap_or_default())?;
    Ok((old, new))
}

/// Adds a batch's per-number sightings, in key order, so that the B-tree pages are visited once
/// each, front to back.
fn bump_numbers(
    tables: &Tables,
    txn: &mut heed::RwTxn<'_>,
    numbers: HashMap<&[u8], Aggregate, RandomState>,
) -> Result<(), heed::Error> {
    let mut numbers: Vec<_> = numbers.into_iter().collect();
    numbers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (number, seen) in numbers {
        bump(tables.numbers, tables.numbers_by_last, txn, number, seen)?;
    }
    Ok(())
}

/// Adds a batch's IP sightings in key order (B-tree pages visited once, front to back), counts
/// newly verified IPs, and returns when each verified IP of the batch was first verified.
fn bump_ips(
    tables: &Tables,
    txn: &mut heed::RwTxn<'_>,
    ips: HashMap<IpKey, Aggregate, RandomState>,
) -> Result<HashMap<IpKey, u64, RandomState>, heed::Error> {
    let mut ips: Vec<_> = ips.into_iter().collect();
    ips.sort_unstable_by(|a, b| a.0.as_slice().cmp(b.0.as_slice()));
    let mut verified_since: HashMap<IpKey, u64, RandomState> = HashMap::default();
    let mut newly_verified = 0u64;
    for (ip, seen) in ips {
        let (old, new) = bump(tables.ips, tables.ips_by_last, txn, ip.as_slice(), seen)?;
        if new.verified != 0 {
            verified_since.insert(ip, new.verified);
            if old.is_none_or(|old| old.verified == 0) {
                newly_verified += 1;
            }
        }
    }
    if newly_verified > 0 {
        let count = read_u64(tables.meta.get(txn, META_VERIFIED_IPS)?).unwrap_or(0);
        let count = count.saturating_add(newly_verified);
        tables
            .meta
            .put(txn, META_VERIFIED_IPS, &count.to_be_bytes())?;
    }
    Ok(verified_since)
}

/// Remembers the event's AS organisation for [`put_as_orgs`].
fn note_as_org<'e>(as_orgs: &mut HashMap<u32, &'e str, RandomState>, event: &'e Event) {
    let enrichment = event.enrichment.as_deref();
    if let Some((asn, org)) = enrichment.and_then(|e| e.asn.zip(e.as_org.as_deref())) {
        as_orgs.insert(asn, org);
    }
}

/// Keeps the newest organisation of each AS number the batch saw (written only when it changed).
fn put_as_orgs(
    tables: &Tables,
    txn: &mut heed::RwTxn<'_>,
    as_orgs: HashMap<u32, &str, RandomState>,
) -> Result<(), heed::Error> {
    for (asn, org) in as_orgs {
        let key = as_org_key(asn);
        if tables.meta.get(txn, &key)? != Some(org.as_bytes()) {
            tables.meta.put(txn, &key, org.as_bytes())?;
        }
    }
    Ok(())
}

fn as_org_key(asn: u32) -> [u8; 11] {
    let mut key = [0; 11];
    key[..7].copy_from_slice(META_AS_ORG_PREFIX);
    key[7..].copy_from_slice(&asn.to_be_bytes());
    key
}

/// Marks our own event `index` verified when its IP was verified at or before it arrived.
fn mark_if_verified(
    batch: &mut encoder::Batch,
    index: usize,
    local_node: Uuid,
    verified_since: &HashMap<IpKey, u64, RandomState>,
) {
    let Some(event) = batch.events.get(index) else {
        return;
    };
    if event.source_verified || event.node_id != local_node {
        return;
    }
    let since = verified_since.get(&ip_key(display_ip(event.source)));
    if since.is_some_and(|since| *since <= event.timestamp_ns) {
        batch.mark_verified(index);
    }
}

/// IPv4 as 4 bytes, IPv6 as 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct IpKey {
    bytes: [u8; 16],
    len: usize,
}

impl IpKey {
    pub(super) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

fn ip_key(ip: IpAddr) -> IpKey {
    let mut bytes = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            IpKey { bytes, len: 4 }
        }
        IpAddr::V6(v6) => IpKey {
            bytes: v6.octets(),
            len: 16,
        },
    }
}

fn ip_from_key(key: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(key) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(key)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The aggregate key of a called number: `None` for absent, empty or `NOT_FOUND`; longer
/// numbers are counted under their first [`limits::CALLED_NUMBER_KEY_BYTES_MAX`] bytes.
fn number_key(number: Option<&[u8]>) -> Option<&[u8]> {
    let number = number?;
    if number.is_empty() || number == NOT_FOUND.as_bytes() {
        return None;
    }
    Some(
        number
            .get(..limits::CALLED_NUMBER_KEY_BYTES_MAX)
            .unwrap_or(number),
    )
}

fn read_u64(value: Option<&[u8]>) -> Option<u64> {
    value
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(u64::from_be_bytes)
}

/// Stores a dictionary the encoder just trained, in the transaction of the first records that
/// use it: a reader sees both or neither.
fn put_new_dictionary(
    meta: Table,
    txn: &mut heed::RwTxn<'_>,
    dictionary: Option<&[u8]>,
) -> Result<(), heed::Error> {
    let Some(dictionary) = dictionary else {
        return Ok(());
    };
    let mut value = DICTIONARY_ID.to_be_bytes().to_vec();
    value.extend_from_slice(dictionary);
    meta.put(txn, META_DICTIONARY, &value)
}

fn parse_dictionary(value: &[u8]) -> Option<Dictionary> {
    let (id, bytes) = value.split_first_chunk::<4>()?;
    let prepared = DDict::try_create(bytes)?;
    Some(Dictionary {
        id: u32::from_be_bytes(*id),
        bytes: bytes.to_vec(),
        prepared,
    })
}

fn canonical_path(path: &Path) -> Result<PathBuf, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(path) = path.canonicalize() {
        return Ok(path);
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    Ok(parent.canonicalize().map_err(io)?.join(name))
}

fn open_inner(path: &Path, no_sync: bool, options: StoreOptions) -> Result<Inner, StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    if options.read_only && !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let mut flags = EnvFlags::NO_SUB_DIR;
    if no_sync {
        flags |= EnvFlags::NO_SYNC;
    }
    if options.read_only {
        flags |= EnvFlags::READ_ONLY;
    }
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    builder
        .map_size(options.map_bytes_initial)
        .max_dbs(table_names().count() as u32)
        .max_readers(limits::STORE_READERS_MAX);
    // SAFETY: heed marks these unsafe because NO_SYNC trades durability after an OS crash
    // (the `--no-sync` choice the operator made) and because a memory map must not be modified
    // behind LMDB's back; only LMDB (with its lock file) touches this file.
    #[allow(unsafe_code)]
    let env = unsafe { builder.flags(flags).open(path) }.map_err(open_error)?;
    let tables = if options.read_only {
        open_tables(&env, path)?
    } else {
        create_tables(&env)?
    };
    let (node_id, dictionary) = {
        let txn = env.read_txn()?;
        check_schema(&tables, &txn, path)?;
        let node = tables
            .meta
            .get(&txn, META_NODE_ID)?
            .and_then(|v| Uuid::from_slice(v).ok());
        let dictionary = tables
            .meta
            .get(&txn, META_DICTIONARY)?
            .and_then(parse_dictionary);
        let node = node.ok_or(StoreError::Damaged {
            path: path.into(),
            what: "no node id",
        })?;
        (node, dictionary)
    };
    let cell = OnceLock::new();
    if let Some(dictionary) = dictionary {
        let _ = cell.set(dictionary);
    }
    Ok(Inner {
        env,
        tables,
        node_id,
        path: path.to_path_buf(),
        resize_lock: RwLock::new(()),
        dictionary: cell,
    })
}

fn tables_from(list: [Table; 7], dash: Option<dashboard_table::DashTables>) -> Tables {
    let [
        events,
        uuids,
        ips,
        numbers,
        ips_by_last,
        numbers_by_last,
        meta,
    ] = list;
    Tables {
        events,
        uuids,
        ips,
        numbers,
        ips_by_last,
        numbers_by_last,
        meta,
        dash,
    }
}

fn create_tables(env: &Env<WithoutTls>) -> Result<Tables, StoreError> {
    let txn = env.write_txn()?;
    let created = env.create_databases_and_commit(txn, |opener, txn| {
        let mut list = Vec::with_capacity(TABLE_NAMES.len());
        for name in TABLE_NAMES {
            list.push(opener.create_database::<Bytes, Bytes>(txn, Some(name))?);
        }
        let [
            events,
            uuids,
            ips,
            numbers,
            ips_by_last,
            numbers_by_last,
            meta,
        ] = <[_; 7]>::try_from(list).map_err(|_| heed::Error::Mdb(heed::MdbError::Invalid))?;
        if meta.get(txn, META_SCHEMA_VERSION)?.is_none() && events.is_empty(txn)? {
            meta.put(txn, META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
        }
        if meta.get(txn, META_NODE_ID)?.is_none() {
            meta.put(txn, META_NODE_ID, Uuid::new_v4().as_bytes())?;
        }
        if meta.get(txn, META_PROOF_SECRET)?.is_none() {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|_| heed::Error::Mdb(heed::MdbError::Panic))?;
            meta.put(txn, META_PROOF_SECRET, &secret)?;
        }
        let list = [
            events,
            uuids,
            ips,
            numbers,
            ips_by_last,
            numbers_by_last,
            meta,
        ];
        let [buckets, recent] = dashboard_table::DASH_TABLE_NAMES;
        let dash = [
            opener.create_database::<Bytes, Bytes>(txn, Some(buckets))?,
            opener.create_database::<Bytes, Bytes>(txn, Some(recent))?,
        ];
        Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((list, dash)))
    })?;
    match created {
        CommitOrAbort::Commit((list, [buckets, recent])) => Ok(tables_from(
            list,
            Some(dashboard_table::DashTables { buckets, recent }),
        )),
        CommitOrAbort::Abort(()) => Err(heed::Error::Mdb(heed::MdbError::Invalid).into()),
    }
}

fn open_tables(env: &Env<WithoutTls>, path: &Path) -> Result<Tables, StoreError> {
    let txn = env.read_txn()?;
    let opened = env.open_databases_and_commit(txn, |opener, txn| {
        let mut list = Vec::with_capacity(TABLE_NAMES.len());
        for name in TABLE_NAMES {
            match opener.open_database::<Bytes, Bytes>(txn, Some(name))? {
                Some(table) => list.push(table),
                None => return Ok(CommitOrAbort::Abort(name)),
            }
        }
        let list =
            <[_; 7]>::try_from(list).map_err(|_| heed::Error::Mdb(heed::MdbError::Invalid))?;
        let [buckets, recent] = dashboard_table::DASH_TABLE_NAMES;
        let buckets = opener.open_database::<Bytes, Bytes>(txn, Some(buckets))?;
        let recent = opener.open_database::<Bytes, Bytes>(txn, Some(recent))?;
        let dash = buckets
            .zip(recent)
            .map(|(buckets, recent)| [buckets, recent]);
        Ok::<_, heed::Error>(CommitOrAbort::Commit((list, dash)))
    })?;
    match opened {
        CommitOrAbort::Commit((list, dash)) => Ok(tables_from(
            list,
            dash.map(|[buckets, recent]| dashboard_table::DashTables { buckets, recent }),
        )),
        CommitOrAbort::Abort(_) => Err(StoreError::Damaged {
            path: path.to_path_buf(),
            what: "missing table",
        }),
    }
}

fn check_schema(
    tables: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    path: &Path,
) -> Result<(), StoreError> {
    let found = tables
        .meta
        .get(txn, META_SCHEMA_VERSION)?
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(u32::from_be_bytes)
        .ok_or(StoreError::Damaged {
            path: path.to_path_buf(),
            what: "no schema version",
        })?;
    let path = path.to_path_buf();
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path,
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(StoreError::SchemaTooOld {
            path,
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Oracle: a list page read by one pass and a sort equals the page read by walking the
    /// last-seen index, for every limit and cursor, with ties in last-seen and a filter.
    #[test]
    fn list_scan_equals_index_walk() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            db_file: dir.path().join("sentrypeer.db"),
            batch_events_max: 64,
            batch_interval: std::time::Duration::from_millis(5),
            no_sync: true,
            retention_days: None,
        };
        let store = Store::open(&config).unwrap();
        let tables = &store.inner.tables;
        let mut txn = store.inner.env.write_txn().unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..3u64 {
            for index in 0..300u64 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                // Few distinct timestamps: many keys share a last-seen.
                let seen = Aggregate::once(1_000 + round * 10 + (state >> 60), false);
                let key = format!(
                    "{:0width$}",
                    index * 7 % 300,
                    width = 1 + (index % 5) as usize
                );
                bump(
                    tables.numbers,
                    tables.numbers_by_last,
                    &mut txn,
                    key.as_bytes(),
                    seen,
                )
                .unwrap();
            }
        }
        txn.commit().unwrap();
        let reader = store.read().unwrap();
        let build = |key: &[u8], agg: Aggregate| {
            (!key.ends_with(b"3")).then(|| (key.to_vec(), agg.last, agg.count))
        };
        let (by_last, numbers) = (tables.numbers_by_last, tables.numbers);
        let mut cursors = vec![
            None,
            Some(PageCursor(vec![0])),
            Some(PageCursor(vec![0xff; 3])),
        ];
        for limit in [1, 2, 50, 151, 299, 300, 301, 1_000] {
            let mut cursor = None;
            loop {
                let walk = reader
                    .newest_first_by_index(by_last, numbers, None, limit, cursor.as_ref(), build)
                    .unwrap();
                let scan = reader
                    .newest_first_by_scan(numbers, 300, limit, cursor.as_ref(), build)
                    .unwrap();
                assert_eq!(scan, walk, "limit {limit}, cursor {cursor:?}");
                cursors.push(walk.next.clone());
                match walk.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        for cursor in cursors.iter().flatten() {
            let walk = reader.newest_first_by_index(by_last, numbers, None, 7, Some(cursor), build);
            let scan = reader.newest_first_by_scan(numbers, 300, 7, Some(cursor), build);
            assert_eq!(scan.unwrap(), walk.unwrap());
        }
    }

    #[test]
    fn page_cursor_hex_roundtrip() {
        let cursor = PageCursor(vec![0, 1, 0xab, 0xff]);
        assert_eq!(cursor.to_hex(), "0001abff");
        assert_eq!(PageCursor::from_hex("0001abff"), Some(cursor));
        assert_eq!(PageCursor::from_hex("0g"), None);
        assert_eq!(PageCursor::from_hex("abc"), None);
    }

    #[test]
    fn number_key_skips_not_found() {
        assert_eq!(number_key(None), None);
        assert_eq!(number_key(Some(b"NOT_FOUND")), None);
        assert_eq!(number_key(Some(b"")), None);
        assert_eq!(number_key(Some(b"0044")), Some(&b"0044"[..]));
        let long = vec![b'1'; limits::CALLED_NUMBER_KEY_BYTES_MAX + 1];
        assert_eq!(
            number_key(Some(&long)).unwrap().len(),
            limits::CALLED_NUMBER_KEY_BYTES_MAX
        );
    }

    #[test]
    fn aggregate_source_tag_roundtrip_and_newest_wins() {
        let old = Aggregate::once(10, false).tagged(Some(&crate::event::Enrichment {
            country: Some(*b"NL"),
            asn: Some(64_500),
            as_org: None,
        }));
        let newer = Aggregate::once(20, false).tagged(Some(&crate::event::Enrichment::default()));
        let plain = Aggregate::once(30, true);
        let merged = old.merge(newer).merge(plain);
        assert_eq!(merged.source, Some(SourceTag::default()));
        assert_eq!(newer.merge(old).source, Some(SourceTag::default()));
        for agg in [old, newer, plain, merged] {
            let mut bytes = [0; 39];
            let len = agg.encode(&mut bytes);
            let back = Aggregate::decode(&bytes[..len]).unwrap();
            assert_eq!(
                (
                    back.first,
                    back.last,
                    back.count,
                    back.verified,
                    back.source
                ),
                (agg.first, agg.last, agg.count, agg.verified, agg.source)
            );
        }
    }

    #[test]
    fn ip_key_roundtrip() {
        for text in ["10.0.0.1", "2001:db8::1"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_from_key(ip_key(ip).as_slice()), Some(ip));
        }
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
