//! Integration tests: one binary, a module per area.

/// The sensor's engines and the shared sensor harness (`both_engines!`); listed first for its
/// macro.
#[macro_use]
mod engine;

/// The shard driver on real sockets: gather pause, drain on stop (both engines).
mod shard_driver;

/// The sensor over UDP: fields, destination addresses, replies, rate limit, silent mode.
mod udp;

/// The sensor over TCP: framing, idle timeout, connection caps, replies.
mod tcp;

/// The sensor over TLS: events, replies, handshake timeout.
mod tls;

/// The operator's allowlist (`--ignore-ip`): ignored sources dropped and counted, others served.
mod ignore;

/// Real SIP tools against the sensor: sipsak and svmap.
mod clients;

/// Real SIP clients prove their source: sipsak and svcrack against `--sip-challenge`, INVITE/ACK.
mod verified_clients;

/// The HTTP API: compat routes, additions, limits, hostile input.
mod api;

/// The dashboard's JSON endpoints and the writer's time buckets behind them.
mod dashboard_api;

/// The `sentrypeer` binary's command line, environment, config file and exit codes.
mod cli;

/// The man page generated from the clap definition matches the committed one.
mod manpage;

/// The LMDB store, its writer and outputs.
mod store;

/// The webhook worker against a local HTTP server.
mod webhook;

/// The NATS JetStream publisher against a real nats-server: exactly once, kill and restart,
/// late server, TLS and credentials.
mod nats_publish;

/// Peer to peer: several nodes in one process, a hostile gossipsub peer, bandwidth bounds.
#[cfg(feature = "p2p")]
mod p2p;

/// A fleet through a real `nats-server`: sensors publish, a hub (`--nats-ingest`) gathers every
/// event exactly once, through server and hub restarts; garbage on the subject is never stored.
mod nats_fleet;

/// Forged UDP sources are never verified; `--verified-only` keeps them from syslog, the feed and
/// peers (needs root for the raw socket, and P2P).
#[cfg(feature = "p2p")]
mod verified;

/// The real binary as a child process: start, API, metrics, export (fault and abuse tests).
mod support;

/// Faults under the real binary: kill -9, disk full, log rotation, missing syslog.
mod fault;

/// Abuse of the real binary: floods, stalls, reflection, privileges, stray files, secrets.
mod abuse;

/// Progress on stderr under tmux (a real terminal): the export bar, absent when stderr is a file
/// or a pipe, the exported bytes unchanged.
mod progress;

/// `sentrypeer top` in a real terminal (tmux): live screen, hostile user agents, restore on exit.
mod top;

/// The dashboard in headless Chromium: token prompt, totals, charts, live feed, hostile input.
mod dashboard_browser;

/// Offline enrichment (`--geoip-db`, `--asn-db`) with MMDB files built by the test: look-ups,
/// store, JSON log, API filters, SIGHUP, a missing file.
mod enrich;

/// Operations: contrib/ (fail2ban, systemd, nftables, logrotate, Dockerfile) checked by their tools.
mod ops;

/// Debian's Kamailio with `contrib/kamailio/sentrypeer.cfg` asks the real binary's
/// `/numbers/{n}`: recorded numbers get 403, others reach the carrier, the sensor down fails open.
mod kamailio;
