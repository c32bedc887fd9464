//! The shard's source proofs, driven through `ShardCore::handle_message` with time passed in: a
//! To-tag or nonce of ours proves the IP it was made for while fresh, and nothing else does.

use std::net::SocketAddr;

use super::shard::test_core;
use crate::event::Transport;

const NOW_NS: u64 = 1_765_000_000_000_000_000;
const HOUR_NS: u64 = 3_600_000_000_000;

fn request(method: &str, to_tag: Option<&str>, authorization: Option<&str>) -> Vec<u8> {
    let tag = to_tag.map(|tag| format!(";tag={tag}")).unwrap_or_default();
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1\r\n\
         From: <sip:100@192.0.2.1>;tag=abc\r\nTo: <sip:100@192.0.2.1>{tag}\r\n\
         Call-ID: proof-test@10.0.0.1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
         User-Agent: proof-test\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn from(ip: &str) -> SocketAddr {
    format!("{ip}:5060").parse().unwrap()
}

fn header<'r>(reply: &'r str, name: &str) -> &'r str {
    reply
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {reply}"))
}

fn to_tag(reply: &str) -> String {
    header(reply, "To: ")
        .rsplit(";tag=")
        .next()
        .unwrap()
        .to_owned()
}

fn nonce(reply: &str) -> String {
    let challenge = header(reply, "WWW-Authenticate: ");
    let start = challenge.find("nonce=\"").unwrap() + 7;
    challenge[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn proof_tag_of_our_reply_verifies_its_ip_only_while_fresh() {
    let (mut core, events, metrics) = test_core(true);
    let local = from("127.0.0.1");
    let source = from("10.0.0.1");
    let invite = request("INVITE", None, None);
    let reply = core
        .handle_message(&invite, Transport::Udp, source, local, NOW_NS)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap();
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    let tag = to_tag(&reply);
    assert_eq!(tag.len(), crate::sip::proof::TOKEN_BYTES);
    let first = events.try_recv().unwrap();
    assert!(!first.source_verified);
    let ack = request("ACK", Some(&tag), None);
    let cases = [
        (source, NOW_NS + 1_000, true),
        (from("10.0.0.2"), NOW_NS, false),
        (source, NOW_NS + 2 * HOUR_NS, false),
    ];
    for (sender, at_ns, verified) in cases {
        assert!(
            core.handle_message(&ack, Transport::Udp, sender, local, at_ns)
                .is_none()
        );
        let event = events.try_recv().unwrap();
        assert_eq!(event.source_verified, verified, "{sender} at {at_ns}");
    }
    let totals = metrics.totals();
    assert_eq!(totals.proofs_tag, 1, "{totals:?}");
    assert_eq!(totals.proofs_rejected_foreign, 1, "{totals:?}");
    assert_eq!(totals.proofs_rejected_stale, 1, "{totals:?}");
    // A tag that is not one of ours (another length) is neither proof nor counted.
    let other = request("BYE", Some("1234"), None);
    let _ = core.handle_message(&other, Transport::Udp, source, local, NOW_NS);
    assert!(!events.try_recv().unwrap().source_verified);
    assert_eq!(metrics.totals().proofs_rejected_foreign, 1);
}

#[test]
fn proof_challenge_nonce_verifies_and_gets_403() {
    let (mut core, events, metrics) = test_core(true);
    core.set_sip_challenge(true);
    let local = from("127.0.0.1");
    let source = from("10.0.0.1");
    let register = request("REGISTER", None, None);
    let reply = core
        .handle_message(&register, Transport::Udp, source, local, NOW_NS)
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap();
    assert!(reply.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{reply}");
    assert!(header(&reply, "WWW-Authenticate: ").starts_with("Digest realm=\"asterisk\""));
    assert!(reply.len() <= 2 * register.len());
    let nonce = nonce(&reply);
    assert!(!events.try_recv().unwrap().source_verified);
    let credentials = |nonce: &str| {
        format!(
            "Digest username=\"1001\", realm=\"asterisk\", nonce=\"{nonce}\", \
             uri=\"sip:192.0.2.1\", response=\"00000000000000000000000000000000\""
        )
    };
    let answered = request("REGISTER", None, Some(&credentials(&nonce)));
    let cases = [
        (source, NOW_NS + 1_000, "403 Forbidden", true),
        (from("10.0.0.2"), NOW_NS, "401 Unauthorized", false),
        (source, NOW_NS + 2 * HOUR_NS, "401 Unauthorized", false),
    ];
    for (sender, at_ns, status, verified) in cases {
        let reply = core
            .handle_message(&answered, Transport::Udp, sender, local, at_ns)
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .unwrap();
        assert!(
            reply.starts_with(&format!("SIP/2.0 {status}\r\n")),
            "{reply}"
        );
        let event = events.try_recv().unwrap();
        assert_eq!(event.source_verified, verified, "{sender} at {at_ns}");
        assert_eq!(event.auth_username(), Some(&b"1001"[..]));
    }
    // OPTIONS keeps its 200; a forged nonce proves nothing.
    let options = request(
        "OPTIONS",
        None,
        Some(&credentials("0123456789abcdef0123456789ab")),
    );
    let reply = core
        .handle_message(&options, Transport::Udp, source, local, NOW_NS)
        .unwrap();
    assert!(reply.starts_with(b"SIP/2.0 200 OK\r\n"));
    assert!(!events.try_recv().unwrap().source_verified);
    let totals = metrics.totals();
    assert_eq!(
        (totals.challenges_sent, totals.proofs_nonce),
        (3, 1),
        "{totals:?}"
    );
    assert_eq!(
        (totals.proofs_rejected_foreign, totals.proofs_rejected_stale),
        (2, 1),
        "{totals:?}"
    );
}

#[test]
fn proof_stream_transports_are_verified_by_their_handshake() {
    let (mut core, events, metrics) = test_core(false);
    let options = request("OPTIONS", None, None);
    for transport in [Transport::Tcp, Transport::Tls, Transport::Udp] {
        let reply = core.handle_message(
            &options,
            transport,
            from("10.0.0.1"),
            from("127.0.0.1"),
            NOW_NS,
        );
        assert!(reply.is_none(), "passive");
        let event = events.try_recv().unwrap();
        assert_eq!(
            event.source_verified,
            transport != Transport::Udp,
            "{transport:?}"
        );
    }
    assert_eq!(metrics.totals().proofs_handshake, 2);
}
