//! Offline enrichment of source IPs: the country (`--geoip-db`) and autonomous system
//! (`--asn-db`) of an address, read from MaxMind-format (MMDB) files that the operator chose and
//! downloaded (GeoLite2, DB-IP Lite, IPinfo Lite, iptoasn conversions).
//!
//! [`Enricher`] is the shared handle: it holds the open [`Databases`] (memory-mapped with the
//! `maxminddb` crate) behind a lock taken once per batch to clone an `Arc`, and swaps them for
//! freshly opened ones on [`Enricher::reopen`] (SIGHUP); a failed re-open keeps the old ones.
//! The encoder thread ([`crate::store`]) looks every event's source up after the channel, before
//! the record is encoded; [`lookup`] decodes the records.
//!
//! Never: runs on a shard, fetches anything, panics on a malformed database (a record that does
//! not decode is a miss), or modifies a mapped file. A file must be replaced by rename (as
//! `geoipupdate` does), never rewritten in place: the old mapping stays valid until the swap.

pub mod lookup;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use maxminddb::{MaxMindDbError, Mmap, Reader};

use crate::config::EnrichConfig;
use crate::event::Enrichment;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {key} \"{}\": {source}", .path.display())]
pub struct EnrichError {
    /// The setting that names the file: `geoip_db` or `asn_db`.
    pub key: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: MaxMindDbError,
}

/// The open databases: each `None` when not configured.
pub struct Databases {
    country: Option<Reader<Mmap>>,
    asn: Option<Reader<Mmap>>,
}

impl fmt::Debug for Databases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Databases")
            .field("country", &self.country.is_some())
            .field("asn", &self.asn.is_some())
            .finish()
    }
}

impl Databases {
    /// Opens the configured files.
    pub fn open(config: &EnrichConfig) -> Result<Self, EnrichError> {
        Ok(Self {
            country: open_optional("geoip_db", config.geoip_db.as_deref())?,
            asn: open_optional("asn_db", config.asn_db.as_deref())?,
        })
    }

    /// What the databases say of `ip` (an IPv4-mapped IPv6 address is looked up as IPv4); a
    /// field is `None` on a miss or when its database is not configured.
    pub fn lookup(&self, ip: IpAddr) -> Enrichment {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let country = self
            .country
            .as_ref()
            .and_then(|reader| lookup::country(reader, ip));
        let (asn, as_org) = self
            .asn
            .as_ref()
            .map_or((None, None), |reader| lookup::autonomous_system(reader, ip));
        Enrichment {
            country,
            asn,
            as_org,
        }
    }
}

fn open_optional(
    key: &'static str,
    path: Option<&Path>,
) -> Result<Option<Reader<Mmap>>, EnrichError> {
    let Some(path) = path else {
        return Ok(None);
    };
    // SAFETY: the mapped file must not change while mapped. This process never writes it; the
    // operator replaces it by rename (documented in docs/operations.md), which leaves the mapped
    // inode intact until the last reader of the old `Databases` is dropped.
    #[allow(unsafe_code)]
    let reader = unsafe { Reader::open_mmap(path) };
    reader.map(Some).map_err(|source| EnrichError {
        key,
        path: path.to_owned(),
        source,
    })
}

/// The shared, swappable handle on the databases.
pub struct Enricher {
    config: EnrichConfig,
    current: RwLock<Arc<Databases>>,
}

impl fmt::Debug for Enricher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enricher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Enricher {
    /// Opens the configured databases; `None` when neither `--geoip-db` nor `--asn-db` is set.
    pub fn open(config: &EnrichConfig) -> Result<Option<Arc<Self>>, EnrichError> {
        if !config.enabled() {
            return Ok(None);
        }
        let databases = Databases::open(config)?;
        Ok(Some(Arc::new(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(databases)),
        })))
    }

    /// The databases in use now (kept alive by the caller for as long as it holds them).
    pub fn databases(&self) -> Arc<Databases> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Opens both files again and swaps them in; on an error the old databases stay.
    pub fn reopen(&self) -> Result<(), EnrichError> {
        let fresh = Arc::new(Databases::open(&self.config)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// [`Self::reopen`], printing one line when it fails (SIGHUP).
    pub fn reopen_or_report(&self) {
        if let Err(error) = self.reopen() {
            let line = format!("sentrypeer: {error}; keeping the databases opened before");
            eprintln!("{}", line.replace('\n', " "));
        }
    }
}
