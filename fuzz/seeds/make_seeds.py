#!/usr/bin/env python3
"""Writes the hand-made seed inputs under fuzz/seeds/<target>/ (run from anywhere).

The SIP targets (sip_scanner, sip_reply, sip_auth) also get every tests/corpus/**/*.sip file at run time
(see .ci/fuzz); the seeds here cover the input layouts those files do not: the framer's two
prefix bytes, P2P JSON messages, API request targets and binary event records.
"""
import json
import pathlib
import struct
import uuid

ROOT = pathlib.Path(__file__).resolve().parent
CORPUS = ROOT.parent.parent / "tests" / "corpus"


def write(target, name, data):
    directory = ROOT / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def corpus(path):
    return (CORPUS / path).read_bytes()


# sip_framer: [chunk seed][max pick] stream. Messages back to back, with keep-alives between.
PIPELINE = [
    "valid/sipvicious_options.sip",
    "valid/invite_sdp.sip",
    "valid/lf_only.sip",
    "valid/compact_headers.sip",
    "valid/folded_lines.sip",
    "malformed/response_200.sip",
]
stream = b"\r\n\r\n".join(corpus(p) for p in PIPELINE) + b"\r\n"
write("sip_framer", "pipeline_bytewise", bytes([0, 0]) + stream)
write("sip_framer", "pipeline_chunks", bytes([7, 0]) + stream)
write("sip_framer", "pipeline_small_max", bytes([5, 200]) + stream)
write("sip_framer", "bad_content_length", bytes([3, 0]) + corpus("malformed/bad_content_length.sip"))
write("sip_framer", "keepalive", bytes([1, 0]) + corpus("malformed/keepalive_crlf.sip") * 3)
write("sip_framer", "header_flood", bytes([9, 130]) + corpus("attack/header_flood.sip"))

# sip_reply: requests whose last byte picks the Server/To-tag variants.
base = corpus("valid/sipvicious_options.sip")
for pick in range(12):
    write("sip_reply", f"options_pick{pick}", base + bytes([pick]))
write("sip_reply", "via_flood", corpus("attack/via_flood.sip"))

# sip_auth: credentials and To-tags in the shapes real clients and hostile ones send; the first
# 8 bytes set the clock, the last byte picks the realm.
AUTH_VALUES = [
    b'Digest username="100",realm="asterisk",nonce="0123abcd",uri="sip:h",response="5d54"',
    b'digest USERNAME = "a\\"b" ,\r\n realm=r, nonce=00000000aaaaaaaaaaaaaaaaaaaa',
    b'Digest username="unterminated, realm="r"',
    b'Basic dXNlcjpwYXNz',
]
for n, value in enumerate(AUTH_VALUES):
    for name in (b"Authorization", b"Proxy-Authorization"):
        message = (
            b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>;tag=01c8f2a0d41b9e5a7c3f0e9d2b16\r\n"
            b"Call-ID: c\r\nCSeq: 2 INVITE\r\n" + name + b": " + value + b"\r\n\r\n"
        )
        write("sip_auth", f"{name.decode().lower()}{n}", message + bytes([n]))
write("sip_auth", "ack_to_tag", b"ACK sip:1@h SIP/2.0\r\nTo: <sip:1@h;tag=u> ; TAG = 0abc\r\n\r\n")

# p2p_entry: JSON messages (NOW = 2025-11-28 10:40:00 UTC in the target).
OWN = str(uuid.UUID(int=0x01923E4A7B1C7D2E8F3A00000000AAAA))


def entry(n, **fields):
    value = {
        "event_uuid": str(uuid.UUID(int=n + 1)),
        "created_by_node_id": str(uuid.UUID(int=0x22)),
        "event_timestamp": "2025-11-28 10:39:59.999999000",
        "collected_method": "responsive",
        "transport_type": "UDP",
        "source_ip": "192.0.2.1",
        "destination_ip": "2001:db8::1",
        "called_number": "100",
        "sip_method": "OPTIONS",
        "sip_user_agent": "NOT_FOUND",
        "sip_message": "OPTIONS sip:100@x SIP/2.0\r\n\r\n",
        "count": 3,
    }
    value.update(fields)
    return {k: v for k, v in value.items() if v is not None}


def message(entries, v=1, **extra):
    return json.dumps({"v": v, "entries": entries, **extra}).encode()


write("p2p_entry", "one", message([entry(0)]))
write("p2p_entry", "two", message([entry(0), entry(1, transport_type="TLS", count=1)]))
write("p2p_entry", "rfc3339", message([entry(0, event_timestamp="2025-11-28T10:00:00+01:00")]))
write("p2p_entry", "no_message", message([entry(0, sip_message=None, called_number="NOT_FOUND")]))
write("p2p_entry", "mapped_ip", message([entry(0, source_ip="::ffff:192.0.2.9")]))
write("p2p_entry", "agent", message([entry(0, sip_user_agent="friendly-scanner \u00e9")]))
write("p2p_entry", "own_id", message([entry(0, created_by_node_id=OWN)]))
write("p2p_entry", "future", message([entry(0, event_timestamp="2025-11-28 10:45:00.0")]))
write("p2p_entry", "version2", message([entry(0)], v=2))
write("p2p_entry", "unknown_field", message([entry(0, extra=[1, 2])], more={"x": None}))

# api_route: [mode] target (0: split at ?, 1: path only, 2: "/" + text split at ?).
for name, target in [
    ("root", b"\x00/"),
    ("health", b"\x00/health-check"),
    ("ips", b"\x00/ip-addresses?since=2025-11-28T00:00:00Z&limit=10&format=nftables&cursor=00ff"),
    ("ipset", b"\x00/ip-addresses?format=ipset&limit=100000"),
    ("ip", b"\x00/ip-addresses/192.0.2.1"),
    ("ip6", b"\x00/ip-addresses/2001%3adb8%3A%3A1"),
    ("numbers", b"\x00/numbers?format=text&limit=5&since=2025-11-28+10:00:00.000000000"),
    ("number", b"\x00/numbers/%2B4420"),
    ("events", b"\x02events?since=1969-12-31T23:59:59Z&limit=1000"),
    ("metrics", b"\x01/metrics"),
    ("dotdot", b"\x01/numbers/.."),
    ("bad_escape", b"\x00/numbers/%zz?limit=%"),
]:
    write("api_route", name, target)


# event_codec: version-1 records with raw tails (see src/store/codec.rs).
def varint(value):
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value == 0:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def record(flags, method, called, agent, msg, v6=False):
    out = bytes([1, flags, 0]) + struct.pack(">Q", 1_764_326_400_000_000_000)
    out += uuid.UUID(int=0x1234).bytes + uuid.UUID(int=0x5678).bytes
    if v6:
        out += bytes(15) + b"\x01" + struct.pack(">H", 5060)
    else:
        out += bytes([192, 0, 2, 1]) + struct.pack(">H", 5060)
    out += bytes([127, 0, 0, 1]) + struct.pack(">H", 5060)
    for part in (method, called, agent, msg):
        out += varint(len(part))
    return out + method + called + agent + msg


options = corpus("valid/sipvicious_options.sip")
write("event_codec", "udp_all", record(0b0110_0000, b"OPTIONS", b"100", b"friendly-scanner", options))
write("event_codec", "tcp_none", record(0b0000_0101, b"INVITE", b"", b"", b"INVITE x SIP/2.0\r\n\r\n"))
write("event_codec", "tls_v6", record(0b0010_1010, b"REGISTER", b"+4420", b"", b"", v6=True))

# sip_scanner: start lines and To values from the scanner's unit tests (tests/corpus is added at
# run time).
LINES = [
    b"OPTIONS sip:a SIP/2.0",
    b"options sip:a Sip/2.0\r\n",
    b"X-CUSTOM.1! sip:a SIP/2.0\r\n\r\n",
    b"OPTIONS sip:a SIP/2.0 extra\r\n",
    b"OPT\x00 sip:a SIP/2.0\r\n",
    b"SIP/2.0 180 Ringing\r\n",
    b"sip/2.0 404\r\n",
    b"SIP/2.0 OK\r\n",
    b"\r\n\r\nINVITE sip:1@h SIP/2.0\r\n",
    b"INVITE sip:%2B1@h;x=y SIP/2.0\r\nTo: <sip:h>\r\n\r\n",
]
for n, line in enumerate(LINES):
    write("sip_scanner", f"line{n}", line)
TO_VALUES = [
    b"Name <sip:100@h>;tag=1",
    b"\"a<b>\\\"c\" <sips:200@h;user=phone>",
    b"SIP:400:secret@h",
    b"<tel:+1-555;ext=1>",
    b"<sip:%41%4a%4A%g1%4@h>",
    b"\"unterminated <sip:1@h>",
    b"<sip:600@h",
]
for n, value in enumerate(TO_VALUES):
    message = b"INVITE sip:9@h SIP/2.0\r\nt : " + value + b"\r\n  folded\r\nUser-Agent: \r\n x\r\n\r\n"
    write("sip_scanner", f"to{n}", message)

# nats_ingest: JSON-log objects as a sensor publishes them (NOW = 2025-11-28 10:40:00 UTC).


def log_object(**fields):
    value = {
        "app_name": "sentrypeer",
        "app_version": "0.1.0",
        "event_timestamp": "2025-11-28 10:39:59.999999000",
        "event_uuid": str(uuid.UUID(int=0x11)),
        "created_by_node_id": str(uuid.UUID(int=0x22)),
        "collected_method": "passive",
        "transport_type": "UDP",
        "source_ip": "203.0.113.5",
        "destination_ip": "127.0.0.1",
        "called_number": "100",
        "sip_method": "OPTIONS",
        "sip_user_agent": "friendly-scanner",
        "sip_message": "OPTIONS sip:100@x SIP/2.0\r\n\r\n",
        "source_port": 5070,
        "destination_port": 5060,
        "source_verified": False,
        "auth_username": "NOT_FOUND",
    }
    value.update(fields)
    return json.dumps({k: v for k, v in value.items() if v is not None}).encode()


write("nats_ingest", "one", log_object())
write("nats_ingest", "enriched", log_object(source_country="NL", source_asn="64500"))
write("nats_ingest", "hostile", log_object(sip_user_agent="ua\r\n\t\u001b", called_number="\u0000"))
write("nats_ingest", "mapped_ip", log_object(source_ip="::ffff:192.0.2.9", transport_type="TLS"))
write("nats_ingest", "no_ports", log_object(source_port=None, destination_port=None))
write("nats_ingest", "missing", log_object(event_uuid=None))
write("nats_ingest", "own_id", log_object(created_by_node_id=OWN))
write("nats_ingest", "future", log_object(event_timestamp="2025-11-28 10:45:00.0"))
write("nats_ingest", "rfc3339", log_object(event_timestamp="2025-11-28T10:00:00+01:00"))
write("nats_ingest", "garbage", b"\x00\xff{not json")
