//! TLS: events and replies over a real rustls client, the generated certificate, and the
//! handshake timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sentrypeer::event::{CollectedMethod, Transport};

use crate::engine::{DEADLINE, Engine, Harness, options, start};
use crate::tcp::{connect, wait_closed};

fn tls_client(harness: &Harness) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let cert_pem = std::fs::read(harness.dir.path().join("cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&cert_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(connection, connect(harness.tls()))
}

fn tls_event_and_reply(engine: Engine) {
    let harness = start(engine, |c| c.responsive = true);
    let mut client = tls_client(&harness);
    let message = options("tls-1");
    client.write_all(message.as_bytes()).unwrap();
    client.flush().unwrap();
    let event = harness.next_event();
    assert_eq!(event.transport, Transport::Tls);
    assert_eq!(event.collected_method, CollectedMethod::Responsive);
    assert_eq!(event.destination, harness.tls());
    assert_eq!(event.source, client.sock.local_addr().unwrap());
    assert_eq!(event.message(), message.as_bytes());
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while !reply.ends_with(b"\r\n\r\n") {
        let count = client.read(&mut buffer).unwrap();
        assert!(count > 0, "closed before the reply");
        reply.extend_from_slice(&buffer[..count]);
    }
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n") && reply.contains("Call-ID: tls-1\r\n"));
}

fn tls_silent_two_messages(engine: Engine) {
    let harness = start(engine, |_| {});
    let mut client = tls_client(&harness);
    client
        .write_all((options("tls-a") + &options("tls-b")).as_bytes())
        .unwrap();
    client.flush().unwrap();
    assert_eq!(harness.next_event().message(), options("tls-a").as_bytes());
    assert_eq!(harness.next_event().message(), options("tls-b").as_bytes());
    // Proven by order, not by waiting: after our close_notify the sensor ends the session, so
    // anything it had to send would come before the end of the stream.
    client.conn.send_close_notify();
    client.flush().unwrap();
    client.sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match client.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            // The sensor closes without its own close_notify: the end of the stream.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => panic!("reading to the end of the session: {error}"),
        }
    }
    assert!(
        received.is_empty(),
        "silent mode sends no SIP over TLS: {}",
        received.escape_ascii()
    );
}

fn tls_stalled_handshake_is_cut(engine: Engine) {
    let timeout = Duration::from_millis(400);
    let harness = start(engine, |c| c.tls_handshake_timeout = timeout);
    // A client that connects and never sends its ClientHello.
    let mut stream = connect(harness.tls());
    let elapsed = wait_closed(&mut stream);
    assert!(elapsed >= timeout / 2, "closed after {elapsed:?}");
    harness.wait_totals("handshake failure counted", |t| {
        t.tls_handshake_failures == 1
    });
}

fn tls_plain_text_on_tls_port_fails_handshake(engine: Engine) {
    let harness = start(engine, |_| {});
    let mut stream = connect(harness.tls());
    stream.write_all(options("plain").as_bytes()).unwrap();
    wait_closed(&mut stream);
    harness.wait_totals("handshake failure counted", |t| {
        t.tls_handshake_failures == 1
    });
    harness.assert_no_event_before_marker();
}

both_engines!(
    tls_event_and_reply,
    tls_silent_two_messages,
    tls_stalled_handshake_is_cut,
    tls_plain_text_on_tls_port_fails_handshake,
);
