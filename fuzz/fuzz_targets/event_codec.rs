//! `store::codec` on arbitrary bytes and on events built from arbitrary parts.
//!
//! Invariants: `decode` and `decode_header` never panic on any bytes; a record that decodes
//! re-encodes to one that decodes to the same event, and its header agrees with the event; for an
//! event built from arbitrary parts, `decode(encode(e)) == e` for every way a record is written:
//! raw (`encode`), compressed (`Packer`), compressed with a dictionary (given the dictionary;
//! without it the record is `DictionaryMissing`), and with the node id left out for the store's
//! own node (given the node id; without it the record does not decode).
#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::arbitrary::{Result as ArbitraryResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use sentrypeer::event::{CollectedMethod, Event, EventParts, Transport};
use sentrypeer::store::codec::{
    CodecError, Context, Packer, Unpacker, decode, decode_header, decode_with, encode,
};
use uuid::Uuid;
use zstd::zstd_safe::DDict;

const DICTIONARY_ID: u32 = 7;
/// A raw-content dictionary: bytes typical of the tails it compresses.
const DICTIONARY: &[u8] = b"OPTIONSINVITEREGISTERfriendly-scannersipvicioussipsak\
OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.1.1:5060;branch=z9hG4bK-\r\n\
From: \"sipvicious\"<sip:100@1.1.1.1>;tag=\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\n\
Call-ID: \r\nCSeq: 1 OPTIONS\r\nContact: <sip:100@127.0.1.1:5060>\r\nAccept: application/sdp\r\n\
User-Agent: friendly-scanner\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

struct Codecs {
    plain: Packer,
    local: Packer,
    dictionary: Packer,
    ddict: &'static DDict<'static>,
    unpacker: Unpacker,
}

thread_local! {
    static CODECS: RefCell<Codecs> = RefCell::new(Codecs {
        plain: Packer::new().expect("packer"),
        local: Packer::new().expect("packer"),
        dictionary: Packer::with_dictionary(DICTIONARY_ID, DICTIONARY).expect("dictionary"),
        ddict: Box::leak(Box::new(DDict::create(DICTIONARY))),
        unpacker: Unpacker::new(),
    });
}

fn address(u: &mut Unstructured<'_>) -> ArbitraryResult<SocketAddr> {
    let ip = if u.arbitrary()? {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?))
    };
    Ok(SocketAddr::new(ip, u.arbitrary()?))
}

fn event(u: &mut Unstructured<'_>) -> ArbitraryResult<Event> {
    let timestamp_ns = u.arbitrary()?;
    let uuid = Uuid::from_u128(u.arbitrary()?);
    let node_id = Uuid::from_u128(u.arbitrary()?);
    let transport = *u.choose(&[Transport::Udp, Transport::Tcp, Transport::Tls])?;
    let collected_method = *u.choose(&[CollectedMethod::Passive, CollectedMethod::Responsive])?;
    let source = address(u)?;
    let destination = address(u)?;
    let method: &[u8] = u.arbitrary()?;
    let called_number: Option<&[u8]> = u.arbitrary()?;
    let user_agent: Option<&[u8]> = u.arbitrary()?;
    let message: &[u8] = u.arbitrary()?;
    Ok(Event::new(&EventParts {
        timestamp_ns,
        uuid,
        node_id,
        transport,
        collected_method,
        source,
        destination,
        method,
        called_number,
        user_agent,
        message,
        source_verified: false,
        auth_username: None,
    }))
}

fn check_header(record: &[u8], event: &Event) {
    let header = decode_header(record).expect("header of a good record");
    assert_eq!(header.timestamp_ns, event.timestamp_ns);
    assert_eq!(header.uuid, event.uuid);
}

fn roundtrip(codecs: &mut Codecs, event: &Event) {
    let mut record = Vec::new();
    encode(event, &mut record);
    assert_eq!(decode(&record).as_ref(), Ok(event), "raw roundtrip");
    check_header(&record, event);

    record.clear();
    codecs.plain.encode(event, &mut record).expect("encode");
    assert_eq!(decode(&record).as_ref(), Ok(event), "compressed roundtrip");
    check_header(&record, event);

    record.clear();
    codecs
        .dictionary
        .encode(event, &mut record)
        .expect("encode");
    let context = Context {
        local_node: None,
        dictionary: Some((DICTIONARY_ID, codecs.ddict)),
    };
    let decoded = decode_with(&record, &context, &mut codecs.unpacker);
    assert_eq!(decoded.as_ref(), Ok(event), "dictionary roundtrip");
    let header = decode_header(&record).expect("header");
    if header.dictionary_id.is_some() {
        assert_eq!(header.dictionary_id, Some(DICTIONARY_ID));
        assert_eq!(
            decode(&record),
            Err(CodecError::DictionaryMissing(DICTIONARY_ID))
        );
    }

    record.clear();
    codecs.local.set_local_node(Some(event.node_id));
    codecs.local.encode(event, &mut record).expect("encode");
    let context = Context {
        local_node: Some(event.node_id),
        dictionary: None,
    };
    let decoded = decode_with(&record, &context, &mut codecs.unpacker);
    assert_eq!(decoded.as_ref(), Ok(event), "local-node roundtrip");
    assert!(decode_header(&record).expect("header").local_node);
    assert!(
        decode(&record).is_err(),
        "a local-node record decoded without the node id"
    );
}

fuzz_target!(|data: &[u8]| {
    CODECS.with_borrow_mut(|codecs| {
        let _ = decode_header(data);
        if let Ok(event) = decode(data) {
            check_header(data, &event);
            let mut record = Vec::new();
            encode(&event, &mut record);
            assert_eq!(
                decode(&record).as_ref(),
                Ok(&event),
                "decoded record re-encodes"
            );
        }
        let context = Context {
            local_node: Some(Uuid::from_u128(1)),
            dictionary: Some((DICTIONARY_ID, codecs.ddict)),
        };
        let _ = decode_with(data, &context, &mut codecs.unpacker);

        if let Ok(event) = event(&mut Unstructured::new(data)) {
            roundtrip(codecs, &event);
        }
    });
});
