//! The binary encoding of an [`Event`] as an LMDB value: a fixed header, then the method, called
//! number, user agent and message either raw or compressed with zstd (optionally with a
//! dictionary trained from the first messages, see [`Packer`]).
//!
//! Layout (version 3), all integers big-endian or LEB128 varints:
//! ```text
//! version u8 | flags u8 | tail coding u8 (+ bit 7: source verified, bit 6: auth username,
//! bit 5: enrichment)
//! | timestamp_ns u64 | uuid [16] | node_id [16] (absent
//! when the local-node flag says it is the store's own node id)
//! | source ip [4|16] port u16 | destination ip [4|16] port u16
//! | varint method_len | varint called_len | varint agent_len | (bit 6: varint auth_len)
//! | varint message_len | (tail coding 2: varint dictionary id)
//! | (bit 5: enrichment: present u8 (bit 0 country, bit 1 ASN, bit 2 AS org) | country [2]
//! | varint asn | varint org_len | org UTF-8) | tail
//! ```
//! The tail is `method | called number | user agent | auth username | message`, raw (coding 0)
//! or one magicless
//! zstd frame without content size, checksum or dictionary id (codings 1, 2; 2 names the
//! dictionary). Record bytes are what keeps the database under 300 bytes per event: see
//! `docs/benchmarks.md`. Version 1 records (no verified flag, no auth username) and version 2
//! records (no enrichment) still decode; a version 3 record without enrichment differs from a
//! version 2 one only in its first byte. The enrichment sits in the head, raw (a country code,
//! an AS number and its organisation: a few bytes, repeated per source IP).
//! The verified bit sits at a fixed offset so the writer can set it on an encoded record
//! ([`mark_verified`]).
//!
//! Never: panics on corrupt or truncated bytes, allocates more than the lengths allowed by
//! [`crate::config::limits`], does I/O.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use uuid::Uuid;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DDict, DParameter, FrameFormat};

use crate::config::limits::{
    EVENT_FIELD_BYTES_MAX, EVENT_MESSAGE_BYTES_MAX, STORE_COMPRESS_BYTES_MIN, STORE_ZSTD_LEVEL,
};
use crate::event::{CollectedMethod, Enrichment, Event, EventParts, Transport};

/// The current encoding version (first byte of every value).
pub const CODEC_VERSION: u8 = 3;

/// Still read: no enrichment.
const CODEC_VERSION_2: u8 = 2;

/// The first version, still read: no source-verified bit, no auth username.
const CODEC_VERSION_1: u8 = 1;

const FLAG_TRANSPORT_MASK: u8 = 0b11;
const FLAG_RESPONSIVE: u8 = 1 << 2;
const FLAG_SOURCE_V6: u8 = 1 << 3;
const FLAG_DESTINATION_V6: u8 = 1 << 4;
const FLAG_CALLED: u8 = 1 << 5;
const FLAG_AGENT: u8 = 1 << 6;
const FLAG_LOCAL_NODE: u8 = 1 << 7;

/// The coding byte's low bits name the tail coding; its high bits are flags (version 2).
const CODING_MASK: u8 = 0b0000_1111;
const CODING_SOURCE_VERIFIED: u8 = 1 << 7;
const CODING_AUTH: u8 = 1 << 6;
/// Version 3: the head ends with the source's enrichment.
const CODING_ENRICHED: u8 = 1 << 5;

const ENRICHED_COUNTRY: u8 = 1;
const ENRICHED_ASN: u8 = 1 << 1;
const ENRICHED_AS_ORG: u8 = 1 << 2;
/// Where the coding byte (and so the verified bit) is in every record.
const CODING_OFFSET: usize = 2;

const TAIL_RAW: u8 = 0;
const TAIL_ZSTD: u8 = 1;
const TAIL_ZSTD_DICTIONARY: u8 = 2;

/// Why bytes could not be decoded (or an event encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer bytes than the layout needs.
    Truncated,
    /// A version this build does not know.
    Version(u8),
    /// A field holds an impossible value.
    Invalid(&'static str),
    /// The tail is compressed with a dictionary that was not supplied.
    DictionaryMissing(u32),
    /// zstd refused to compress or decompress.
    Compression,
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated event record"),
            Self::Version(v) => write!(f, "unknown event record version {v}"),
            Self::Invalid(what) => write!(f, "invalid event record: {what}"),
            Self::DictionaryMissing(id) => write!(f, "event record needs dictionary {id}"),
            Self::Compression => f.write_str("event record compression failed"),
        }
    }
}

impl std::error::Error for CodecError {}

/// The fixed part of a record, readable without touching the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub timestamp_ns: u64,
    pub uuid: Uuid,
    /// The dictionary the tail needs, if any.
    pub dictionary_id: Option<u32>,
    /// The event was collected by the store's own node (its node id is not in the record).
    pub local_node: bool,
    /// The event's source was verified (version 2 records).
    pub source_verified: bool,
    /// The source's country, when enriched (version 3 records).
    pub country: Option<[u8; 2]>,
    /// The source's autonomous system number, when enriched (version 3 records).
    pub asn: Option<u32>,
}

/// What a record may refer to instead of containing it.
#[derive(Clone, Copy, Default)]
pub struct Context<'a> {
    /// The store's node id (records of local events omit it).
    pub local_node: Option<Uuid>,
    /// The store's (id, prepared dictionary), if one was trained.
    pub dictionary: Option<(u32, &'a DDict<'a>)>,
}

/// Encodes `event` with a raw tail, appending to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    encode_raw(event, None, out);
}

fn encode_raw(event: &Event, local_node: Option<Uuid>, out: &mut Vec<u8>) {
    write_head(event, TAIL_RAW, None, local_node, out);
    out.extend_from_slice(event.tail());
}

/// Decodes a record whose tail is raw or compressed without a dictionary.
pub fn decode(bytes: &[u8]) -> Result<Event, CodecError> {
    decode_with(bytes, &Context::default(), &mut Unpacker::new())
}

/// Sets the source-verified flag of an encoded record in place (false when `record` is a
/// version-1 record, which has no such flag).
pub fn mark_verified(record: &mut [u8]) -> bool {
    if !matches!(record.first(), Some(&(CODEC_VERSION | CODEC_VERSION_2))) {
        return false;
    }
    match record.get_mut(CODING_OFFSET) {
        Some(coding) => {
            *coding |= CODING_SOURCE_VERIFIED;
            true
        }
        None => false,
    }
}

/// Reads only the fixed header.
pub fn decode_header(bytes: &[u8]) -> Result<Header, CodecError> {
    let mut reader = Reader { bytes };
    let head = read_head(&mut reader)?;
    Ok(Header {
        timestamp_ns: head.timestamp_ns,
        uuid: head.uuid,
        dictionary_id: head.dictionary_id,
        local_node: head.flags & FLAG_LOCAL_NODE != 0,
        source_verified: head.source_verified,
        country: head.enrichment.as_ref().and_then(|e| e.country),
        asn: head.enrichment.as_ref().and_then(|e| e.asn),
    })
}

/// Decodes any record, given what it may refer to.
pub fn decode_with(
    bytes: &[u8],
    context: &Context<'_>,
    unpacker: &mut Unpacker,
) -> Result<Event, CodecError> {
    let mut reader = Reader { bytes };
    let mut head = read_head(&mut reader)?;
    if head.flags & FLAG_LOCAL_NODE != 0 {
        head.node_id = context
            .local_node
            .ok_or(CodecError::Invalid("local node unknown"))?;
    }
    let dictionary = context.dictionary;
    let tail_bytes = head
        .lengths
        .iter()
        .try_fold(0usize, |sum, len| sum.checked_add(*len));
    let tail_bytes = tail_bytes.ok_or(CodecError::Invalid("length"))?;
    let rest = reader.bytes;
    let tail: &[u8] = match head.coding {
        TAIL_RAW => rest,
        TAIL_ZSTD | TAIL_ZSTD_DICTIONARY => {
            let mut buffer = std::mem::take(&mut unpacker.buffer);
            buffer.clear();
            buffer.reserve(tail_bytes);
            let context = unpacker.context()?;
            let written = match (head.dictionary_id, dictionary) {
                (None, _) => context.decompress(&mut buffer, rest),
                (Some(id), Some((known, ddict))) if id == known => {
                    context.decompress_using_ddict(&mut buffer, rest, ddict)
                }
                (Some(id), _) => {
                    unpacker.buffer = buffer;
                    return Err(CodecError::DictionaryMissing(id));
                }
            };
            unpacker.buffer = buffer;
            match written {
                Ok(n) if n == tail_bytes => {}
                Ok(_) => return Err(CodecError::Invalid("tail length")),
                Err(_) => return Err(CodecError::Compression),
            }
            &unpacker.buffer
        }
        _ => return Err(CodecError::Invalid("tail coding")),
    };
    if tail.len() != tail_bytes {
        return Err(CodecError::Invalid("tail length"));
    }
    build_event(&head, tail)
}

/// A reusable zstd decompression context (created on the first compressed record).
pub struct Unpacker {
    context: Option<DCtx<'static>>,
    buffer: Vec<u8>,
}

impl Unpacker {
    pub fn new() -> Self {
        Self {
            context: None,
            buffer: Vec::new(),
        }
    }

    fn context(&mut self) -> Result<&mut DCtx<'static>, CodecError> {
        if self.context.is_none() {
            let mut context = DCtx::try_create().ok_or(CodecError::Compression)?;
            context
                .set_parameter(DParameter::Format(FrameFormat::Magicless))
                .map_err(|_| CodecError::Compression)?;
            self.context = Some(context);
        }
        self.context.as_mut().ok_or(CodecError::Compression)
    }
}

impl Default for Unpacker {
    fn default() -> Self {
        Self::new()
    }
}

/// A reusable zstd compression context, with the store's dictionary once there is one.
pub struct Packer {
    context: CCtx<'static>,
    dictionary_id: Option<u32>,
    local_node: Option<Uuid>,
    frame: Vec<u8>,
}

impl Packer {
    /// The zstd parameters of every record tail: level [`STORE_ZSTD_LEVEL`], and a magicless frame
    /// without content size, checksum or dictionary id.
    pub const PARAMETERS: [CParameter; 5] = [
        CParameter::CompressionLevel(STORE_ZSTD_LEVEL),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
        CParameter::Format(FrameFormat::Magicless),
    ];

    /// A packer without a dictionary.
    pub fn new() -> Result<Self, CodecError> {
        let mut context = CCtx::try_create().ok_or(CodecError::Compression)?;
        for parameter in Self::PARAMETERS {
            context
                .set_parameter(parameter)
                .map_err(|_| CodecError::Compression)?;
        }
        Ok(Self {
            context,
            dictionary_id: None,
            local_node: None,
            frame: Vec::new(),
        })
    }

    /// A packer that compresses with `dictionary` (identified by `id` in each record).
    pub fn with_dictionary(id: u32, dictionary: &[u8]) -> Result<Self, CodecError> {
        let mut packer = Self::new()?;
        packer
            .context
            .load_dictionary(dictionary)
            .map_err(|_| CodecError::Compression)?;
        packer.dictionary_id = Some(id);
        Ok(packer)
    }

    pub fn dictionary_id(&self) -> Option<u32> {
        self.dictionary_id
    }

    /// Records of events from `node` (the store's own) omit the node id.
    pub fn set_local_node(&mut self, node: Option<Uuid>) {
        self.local_node = node;
    }

    /// The node whose events' records omit the node id.
    pub fn local_node(&self) -> Option<Uuid> {
        self.local_node
    }

    /// Encodes `event` with a compressed tail (raw when compression does not pay), appending to
    /// `out`.
    pub fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let tail = event.tail();
        let tail_bytes = tail.len();
        if tail_bytes < STORE_COMPRESS_BYTES_MIN {
            encode_raw(event, self.local_node, out);
            return Ok(());
        }
        self.frame.clear();
        self.frame.reserve(zstd_safe::compress_bound(tail_bytes));
        match self.context.compress2(&mut self.frame, tail) {
            Ok(written) if written < tail_bytes => {
                let coding = if self.dictionary_id.is_some() {
                    TAIL_ZSTD_DICTIONARY
                } else {
                    TAIL_ZSTD
                };
                write_head(event, coding, self.dictionary_id, self.local_node, out);
                out.extend_from_slice(&self.frame);
                Ok(())
            }
            Ok(_) => {
                encode_raw(event, self.local_node, out);
                Ok(())
            }
            Err(_) => Err(CodecError::Compression),
        }
    }
}

fn write_head(
    event: &Event,
    coding: u8,
    dictionary_id: Option<u32>,
    local_node: Option<Uuid>,
    out: &mut Vec<u8>,
) {
    let local = local_node == Some(event.node_id);
    let transport = match event.transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    };
    let mut flags = transport;
    if event.collected_method == CollectedMethod::Responsive {
        flags |= FLAG_RESPONSIVE;
    }
    if event.source.is_ipv6() {
        flags |= FLAG_SOURCE_V6;
    }
    if event.destination.is_ipv6() {
        flags |= FLAG_DESTINATION_V6;
    }
    if event.called_number().is_some() {
        flags |= FLAG_CALLED;
    }
    if event.user_agent().is_some() {
        flags |= FLAG_AGENT;
    }
    if local {
        flags |= FLAG_LOCAL_NODE;
    }
    let mut coding = coding;
    if event.source_verified {
        coding |= CODING_SOURCE_VERIFIED;
    }
    if event.auth_username().is_some() {
        coding |= CODING_AUTH;
    }
    if event.enrichment.is_some() {
        coding |= CODING_ENRICHED;
    }
    out.extend_from_slice(&[CODEC_VERSION, flags, coding]);
    out.extend_from_slice(&event.timestamp_ns.to_be_bytes());
    out.extend_from_slice(event.uuid.as_bytes());
    if !local {
        out.extend_from_slice(event.node_id.as_bytes());
    }
    write_address(event.source, out);
    write_address(event.destination, out);
    write_varint(event.method().len() as u64, out);
    write_varint(event.called_number().map_or(0, <[u8]>::len) as u64, out);
    write_varint(event.user_agent().map_or(0, <[u8]>::len) as u64, out);
    if let Some(auth) = event.auth_username() {
        write_varint(auth.len() as u64, out);
    }
    write_varint(event.message().len() as u64, out);
    if let Some(id) = dictionary_id {
        write_varint(u64::from(id), out);
    }
    if let Some(enrichment) = &event.enrichment {
        write_enrichment(enrichment, out);
    }
}

fn write_enrichment(enrichment: &Enrichment, out: &mut Vec<u8>) {
    let org = enrichment.as_org.as_deref().map(|org| {
        org.get(..org.floor_char_boundary(EVENT_FIELD_BYTES_MAX))
            .unwrap_or("")
    });
    let mut present = 0;
    if enrichment.country.is_some() {
        present |= ENRICHED_COUNTRY;
    }
    if enrichment.asn.is_some() {
        present |= ENRICHED_ASN;
    }
    if org.is_some() {
        present |= ENRICHED_AS_ORG;
    }
    out.push(present);
    if let Some(country) = enrichment.country {
        out.extend_from_slice(&country);
    }
    if let Some(asn) = enrichment.asn {
        write_varint(u64::from(asn), out);
    }
    if let Some(org) = org {
        write_varint(org.len() as u64, out);
        out.extend_from_slice(org.as_bytes());
    }
}

fn write_address(address: SocketAddr, out: &mut Vec<u8>) {
    match address.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&address.port().to_be_bytes());
}

/// Appends `value` as a LEB128 varint (also the dashboard rings' form, `ring_codec`).
pub(crate) fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

struct Head {
    flags: u8,
    /// The tail coding, without the flag bits.
    coding: u8,
    source_verified: bool,
    auth: bool,
    timestamp_ns: u64,
    uuid: Uuid,
    node_id: Uuid,
    source: SocketAddr,
    destination: SocketAddr,
    /// method, called number, user agent, auth username, message.
    lengths: [usize; 5],
    dictionary_id: Option<u32>,
    enrichment: Option<Enrichment>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

/// A LEB128 varint at the start of `bytes` and the bytes after it; `None` when truncated or
/// longer than ten bytes.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (index, shift) in (0..64).step_by(7).enumerate() {
        let byte = *bytes.get(index)?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(index + 1..).unwrap_or_default()));
        }
    }
    None
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], CodecError> {
        let (head, rest) = self
            .bytes
            .split_at_checked(count)
            .ok_or(CodecError::Truncated)?;
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| CodecError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array::<1>()?))
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let (value, rest) = read_varint(self.bytes).ok_or(CodecError::Invalid("varint"))?;
        self.bytes = rest;
        Ok(value)
    }

    fn length(&mut self, max: usize) -> Result<usize, CodecError> {
        let value = usize::try_from(self.varint()?).map_err(|_| CodecError::Invalid("length"))?;
        if value > max {
            return Err(CodecError::Invalid("length"));
        }
        Ok(value)
    }

    fn address(&mut self, v6: bool) -> Result<SocketAddr, CodecError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))
        };
        let port = u16::from_be_bytes(self.array::<2>()?);
        Ok(SocketAddr::new(ip, port))
    }
}

fn read_head(reader: &mut Reader<'_>) -> Result<Head, CodecError> {
    let version = reader.byte()?;
    if !matches!(version, CODEC_VERSION | CODEC_VERSION_2 | CODEC_VERSION_1) {
        return Err(CodecError::Version(version));
    }
    let flags = reader.byte()?;
    if flags & FLAG_TRANSPORT_MASK == 3 {
        return Err(CodecError::Invalid("flags"));
    }
    let coding_byte = reader.byte()?;
    let (coding, source_verified, auth) = if version == CODEC_VERSION_1 {
        (coding_byte, false, false)
    } else {
        (
            coding_byte & CODING_MASK,
            coding_byte & CODING_SOURCE_VERIFIED != 0,
            coding_byte & CODING_AUTH != 0,
        )
    };
    let enriched = version == CODEC_VERSION && coding_byte & CODING_ENRICHED != 0;
    let timestamp_ns = u64::from_be_bytes(reader.array::<8>()?);
    let uuid = Uuid::from_bytes(reader.array::<16>()?);
    let node_id = if flags & FLAG_LOCAL_NODE != 0 {
        Uuid::nil()
    } else {
        Uuid::from_bytes(reader.array::<16>()?)
    };
    let source = reader.address(flags & FLAG_SOURCE_V6 != 0)?;
    let destination = reader.address(flags & FLAG_DESTINATION_V6 != 0)?;
    let lengths = [
        reader.length(EVENT_FIELD_BYTES_MAX)?,
        reader.length(EVENT_FIELD_BYTES_MAX)?,
        reader.length(EVENT_FIELD_BYTES_MAX)?,
        if auth {
            reader.length(EVENT_FIELD_BYTES_MAX)?
        } else {
            0
        },
        reader.length(EVENT_MESSAGE_BYTES_MAX)?,
    ];
    let dictionary_id = match coding {
        TAIL_RAW | TAIL_ZSTD => None,
        TAIL_ZSTD_DICTIONARY => {
            let id = u32::try_from(reader.varint()?).map_err(|_| CodecError::Invalid("dict"))?;
            Some(id)
        }
        _ => return Err(CodecError::Invalid("tail coding")),
    };
    let enrichment = if enriched {
        Some(read_enrichment(reader)?)
    } else {
        None
    };
    Ok(Head {
        flags,
        coding,
        source_verified,
        auth,
        timestamp_ns,
        uuid,
        node_id,
        source,
        destination,
        lengths,
        dictionary_id,
        enrichment,
    })
}

fn read_enrichment(reader: &mut Reader<'_>) -> Result<Enrichment, CodecError> {
    let present = reader.byte()?;
    if present & !(ENRICHED_COUNTRY | ENRICHED_ASN | ENRICHED_AS_ORG) != 0 {
        return Err(CodecError::Invalid("enrichment"));
    }
    let country = if present & ENRICHED_COUNTRY != 0 {
        let code = reader.array::<2>()?;
        if !code.iter().all(u8::is_ascii_uppercase) {
            return Err(CodecError::Invalid("country"));
        }
        Some(code)
    } else {
        None
    };
    let asn = if present & ENRICHED_ASN != 0 {
        Some(u32::try_from(reader.varint()?).map_err(|_| CodecError::Invalid("asn"))?)
    } else {
        None
    };
    let as_org = if present & ENRICHED_AS_ORG != 0 {
        let len = reader.length(EVENT_FIELD_BYTES_MAX)?;
        let bytes = reader.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| CodecError::Invalid("as org"))?;
        Some(Box::from(text))
    } else {
        None
    };
    Ok(Enrichment {
        country,
        asn,
        as_org,
    })
}

fn build_event(head: &Head, tail: &[u8]) -> Result<Event, CodecError> {
    let mut reader = Reader { bytes: tail };
    let [method_len, called_len, agent_len, auth_len, message_len] = head.lengths;
    let method = reader.take(method_len)?;
    let called = reader.take(called_len)?;
    let agent = reader.take(agent_len)?;
    let auth = reader.take(auth_len)?;
    let message = reader.take(message_len)?;
    if head.flags & FLAG_CALLED == 0 && !called.is_empty() {
        return Err(CodecError::Invalid("called number"));
    }
    if head.flags & FLAG_AGENT == 0 && !agent.is_empty() {
        return Err(CodecError::Invalid("user agent"));
    }
    let transport = match head.flags & FLAG_TRANSPORT_MASK {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        _ => Transport::Tls,
    };
    let collected_method = if head.flags & FLAG_RESPONSIVE != 0 {
        CollectedMethod::Responsive
    } else {
        CollectedMethod::Passive
    };
    let mut event = Event::new(&EventParts {
        timestamp_ns: head.timestamp_ns,
        uuid: head.uuid,
        node_id: head.node_id,
        transport,
        collected_method,
        source: head.source,
        destination: head.destination,
        method,
        called_number: (head.flags & FLAG_CALLED != 0).then_some(called),
        user_agent: (head.flags & FLAG_AGENT != 0).then_some(agent),
        message,
        source_verified: head.source_verified,
        auth_username: head.auth.then_some(auth),
    });
    event.enrichment = head.enrichment.clone().map(Box::new);
    Ok(event)
}

/// Trains a zstd dictionary of at most `bytes_max` bytes from sample tails.
pub fn train_dictionary(samples: &[Vec<u8>], bytes_max: usize) -> Result<Vec<u8>, CodecError> {
    zstd::dict::from_samples(samples, bytes_max).map_err(|_| CodecError::Compression)
}

/// The bytes a dictionary is trained on for `event` (its tail).
pub fn dictionary_sample(event: &Event) -> Vec<u8> {
    event.tail().to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn event(index: u32, message: &[u8], v6: bool) -> Event {
        let source: SocketAddr = if v6 {
            format!("[2001:db8::{index:x}]:5060").parse().unwrap()
        } else {
            format!("10.0.{}.{}:5060", index / 256 % 256, index % 256)
                .parse()
                .unwrap()
        };
        Event::new(&EventParts {
            timestamp_ns: 1_700_000_000_000_000_000 + u64::from(index),
            uuid: Uuid::from_u128(u128::from(index) * 7919),
            node_id: Uuid::from_u128(42),
            transport: if v6 { Transport::Tls } else { Transport::Udp },
            collected_method: if v6 {
                CollectedMethod::Responsive
            } else {
                CollectedMethod::Passive
            },
            source,
            destination: "[::1]:5061".parse().unwrap(),
            method: b"OPTIONS",
            called_number: index.is_multiple_of(2).then_some(&b"0044123"[..]),
            user_agent: (!index.is_multiple_of(3)).then_some(&b"friendly-scanner"[..]),
            message,
            source_verified: index.is_multiple_of(4),
            auth_username: index.is_multiple_of(5).then_some(&b"100"[..]),
        })
    }

    fn message(index: u32) -> Vec<u8> {
        format!(
            "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{index:08x}\r\n\
             From: \"sipvicious\"<sip:100@1.1.1.1>;tag=6330{index:x}\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\n\
             Call-ID: {:016x}\r\nCSeq: 1 OPTIONS\r\nContact: <sip:100@10.0.0.1:5060>\r\n\
             Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nAccept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n",
            u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )
        .into_bytes()
    }

    #[test]
    fn codec_roundtrip_raw() {
        for index in 0..8 {
            let e = event(index, &message(index), index % 2 == 1);
            let mut out = Vec::new();
            encode(&e, &mut out);
            assert_eq!(decode(&out).unwrap(), e);
            let header = decode_header(&out).unwrap();
            assert_eq!(header.uuid, e.uuid);
            assert_eq!(header.timestamp_ns, e.timestamp_ns);
        }
    }

    #[test]
    fn codec_roundtrip_compressed() {
        let mut packer = Packer::new().unwrap();
        let mut unpacker = Unpacker::new();
        for index in 0..8 {
            let e = event(index, &message(index), index % 2 == 0);
            let mut out = vec![9, 9];
            packer.encode(&e, &mut out).unwrap();
            assert_eq!(
                decode_with(&out[2..], &Context::default(), &mut unpacker).unwrap(),
                e
            );
            assert_eq!(decode(&out[2..]).unwrap(), e);
        }
        // A short tail stays raw.
        let short = event(1, b"x", false);
        let mut out = Vec::new();
        packer.encode(&short, &mut out).unwrap();
        assert_eq!(out[2], TAIL_RAW);
        assert_eq!(decode(&out).unwrap(), short);
    }

    #[test]
    fn codec_roundtrip_dictionary() {
        let samples: Vec<Vec<u8>> = (0..500)
            .map(|i| dictionary_sample(&event(i, &message(i), false)))
            .collect();
        let dictionary = train_dictionary(&samples, 16 * 1024).unwrap();
        let ddict = DDict::try_create(&dictionary).unwrap();
        let mut packer = Packer::with_dictionary(1, &dictionary).unwrap();
        let mut plain = Packer::new().unwrap();
        let mut unpacker = Unpacker::new();
        let e = event(1000, &message(1000), false);
        let (mut with, mut without) = (Vec::new(), Vec::new());
        packer.encode(&e, &mut with).unwrap();
        plain.encode(&e, &mut without).unwrap();
        assert!(
            with.len() < without.len(),
            "{} vs {}",
            with.len(),
            without.len()
        );
        assert_eq!(
            decode_with(
                &with,
                &Context {
                    local_node: None,
                    dictionary: Some((1, &ddict))
                },
                &mut unpacker
            )
            .unwrap(),
            e
        );
        assert_eq!(decode(&with), Err(CodecError::DictionaryMissing(1)));
        assert_eq!(decode_header(&with).unwrap().dictionary_id, Some(1));
    }

    #[test]
    fn codec_local_node_omitted() {
        let e = event(4, &message(4), false);
        let mut packer = Packer::new().unwrap();
        let mut full = Vec::new();
        packer.encode(&e, &mut full).unwrap();
        packer.set_local_node(Some(e.node_id));
        let mut short = Vec::new();
        packer.encode(&e, &mut short).unwrap();
        assert_eq!(short.len() + 16, full.len());
        assert!(decode_header(&short).unwrap().local_node);
        assert!(!decode_header(&full).unwrap().local_node);
        assert_eq!(
            decode(&short),
            Err(CodecError::Invalid("local node unknown"))
        );
        let context = Context {
            local_node: Some(e.node_id),
            dictionary: None,
        };
        assert_eq!(
            decode_with(&short, &context, &mut Unpacker::new()).unwrap(),
            e
        );
        // Another node's event keeps its id.
        packer.set_local_node(Some(Uuid::from_u128(1)));
        let mut other = Vec::new();
        packer.encode(&e, &mut other).unwrap();
        assert_eq!(decode(&other).unwrap(), e);
    }

    #[test]
    fn codec_reads_version_1_and_marks_verified() {
        // Without the version-2 fields, a version-1 record differs only in its first byte.
        let e = event(1, &message(1), false);
        assert!(!e.source_verified && e.auth_username().is_none());
        let mut record = Vec::new();
        encode(&e, &mut record);
        record[0] = CODEC_VERSION_1;
        assert_eq!(decode(&record).unwrap(), e);
        assert!(!mark_verified(&mut record), "version 1 has no verified bit");
        record[0] = CODEC_VERSION;
        let mut packed = Vec::new();
        Packer::new().unwrap().encode(&e, &mut packed).unwrap();
        for bytes in [&mut record, &mut packed] {
            assert!(mark_verified(bytes));
            let verified = decode(bytes).unwrap();
            assert!(verified.source_verified);
            let mut unmarked = verified;
            unmarked.source_verified = false;
            assert_eq!(unmarked, e);
        }
        assert!(!mark_verified(&mut []));
    }

    fn enriched(index: u32, enrichment: Enrichment) -> Event {
        let mut e = event(index, &message(index), index % 2 == 1);
        e.enrichment = Some(Box::new(enrichment));
        e
    }

    fn enrichments() -> Vec<Enrichment> {
        let capped = "é".repeat(EVENT_FIELD_BYTES_MAX / 2);
        vec![
            Enrichment::default(),
            Enrichment {
                country: Some(*b"NL"),
                ..Enrichment::default()
            },
            Enrichment {
                country: None,
                asn: Some(u32::MAX),
                as_org: Some("Test \"Net\"".into()),
            },
            Enrichment {
                country: Some(*b"ZZ"),
                asn: Some(64_500),
                as_org: Some(capped.into()),
            },
        ]
    }

    #[test]
    fn codec_roundtrip_enrichment() {
        let mut packer = Packer::new().unwrap();
        for (index, enrichment) in enrichments().into_iter().enumerate() {
            let e = enriched(index as u32, enrichment.clone());
            let (mut raw, mut packed) = (Vec::new(), Vec::new());
            encode(&e, &mut raw);
            packer.encode(&e, &mut packed).unwrap();
            for bytes in [&raw, &packed] {
                assert_eq!(decode(bytes).unwrap(), e);
                let header = decode_header(bytes).unwrap();
                assert_eq!(header.country, enrichment.country);
                assert_eq!(header.asn, enrichment.asn);
            }
        }
        // Not enriched: no enrichment after decoding either.
        let plain = event(9, &message(9), false);
        let mut raw = Vec::new();
        encode(&plain, &mut raw);
        assert_eq!(decode(&raw).unwrap().enrichment, None);
    }

    #[test]
    fn codec_enrichment_org_over_the_cap_is_cut_at_a_character() {
        let long = format!("a{}", "é".repeat(EVENT_FIELD_BYTES_MAX));
        let e = enriched(
            1,
            Enrichment {
                as_org: Some(long.clone().into()),
                ..Enrichment::default()
            },
        );
        let mut raw = Vec::new();
        encode(&e, &mut raw);
        let decoded = decode(&raw).unwrap();
        let org = decoded.enrichment.unwrap().as_org.unwrap();
        assert!(org.len() <= EVENT_FIELD_BYTES_MAX);
        assert!(long.starts_with(&*org) && org.len() > 1000);
    }

    #[test]
    fn codec_reads_version_2() {
        // A version-3 record without enrichment differs from version 2 only in its first byte.
        for index in 0..6 {
            let e = event(index, &message(index), index % 2 == 0);
            let mut packed = Vec::new();
            Packer::new().unwrap().encode(&e, &mut packed).unwrap();
            packed[0] = CODEC_VERSION_2;
            assert_eq!(decode(&packed).unwrap(), e);
            assert!(mark_verified(&mut packed));
            assert!(decode(&packed).unwrap().source_verified);
        }
    }

    #[test]
    fn codec_truncated_is_error() {
        let e = event(3, &message(3), true);
        let mut raw = Vec::new();
        encode(&e, &mut raw);
        let mut packed = Vec::new();
        Packer::new().unwrap().encode(&e, &mut packed).unwrap();
        let mut rich = Vec::new();
        encode(&enriched(3, enrichments().remove(3)), &mut rich);
        for bytes in [&raw, &packed, &rich] {
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_err());
        }
    }

    #[test]
    fn codec_corrupt_never_panics() {
        let e = event(5, &message(5), false);
        let mut packed = Vec::new();
        Packer::new().unwrap().encode(&e, &mut packed).unwrap();
        let mut raw = Vec::new();
        encode(&e, &mut raw);
        let mut rich = Vec::new();
        encode(&enriched(5, enrichments().remove(2)), &mut rich);
        let mut state: u64 = 0x1234_5678;
        for bytes in [&packed, &raw, &rich] {
            for round in 0..2_000 {
                let mut corrupt = bytes.clone();
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let position = (state >> 33) as usize % corrupt.len();
                corrupt[position] ^= 1 << (round % 8);
                // Either an error or some event (a flip in a data byte), never a panic.
                let _ = decode(&corrupt);
                let _ = decode_header(&corrupt);
            }
        }
        assert_eq!(decode(&[4]), Err(CodecError::Version(4)));
        assert_eq!(decode(&[]), Err(CodecError::Truncated));
        let mut huge = vec![CODEC_VERSION, 0, 0];
        huge.extend_from_slice(&[0; 8 + 32 + 12]);
        huge.extend_from_slice(&[0xff; 11]);
        assert!(decode(&huge).is_err());
    }
}
