//! `sentrypeer-loadgen`: scanner-like SIP traffic (`udp`, `tcp`, `tls`) and a bare receive
//! sink (`sink`). See the library docs for the parts.
//!
//! Never: sends to a non-loopback address the user did not name with `--allow-non-loopback`,
//! or runs a generator without `--count` or `--duration`.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sentrypeer_loadgen::message::{Mix, percent_to_ppm};
use sentrypeer_loadgen::plan::RunPlan;
use sentrypeer_loadgen::progress::{LiveBounds, LiveCounters, with_live_line};
use sentrypeer_loadgen::report::Report;
use sentrypeer_loadgen::sink::{SINK_RCVBUF_BYTES_DEFAULT, SinkPlan, bind_sink, run_sink};
use sentrypeer_loadgen::target::{SourceRange, resolve_target};
use sentrypeer_loadgen::{stream, tls, udp};

#[derive(Parser, Debug)]
#[command(
    name = "sentrypeer-loadgen",
    version,
    about = "SIP scanner traffic and a bare UDP sink for benchmarking SentryPeer (loopback only by default)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// UDP datagrams in sendmmsg batches.
    Udp(GeneratorArgs),
    /// Pipelined messages over TCP connections.
    Tcp(GeneratorArgs),
    /// Pipelined messages over TLS connections (any server certificate accepted).
    Tls(GeneratorArgs),
    /// A bare recvmmsg receiver that only counts datagrams and bytes.
    Sink(SinkArgs),
}

#[derive(Args, Debug)]
struct GeneratorArgs {
    /// Where to send: a loopback HOST:PORT unless named with --allow-non-loopback.
    #[arg(long, value_name = "HOST:PORT")]
    target: String,
    /// Messages to send in total.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Seconds to send for (with --count: whichever ends first).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Messages per second in total; without it, flat out.
    #[arg(long, value_name = "PER_SEC")]
    rate: Option<f64>,
    /// Bind senders across this range, round-robin (e.g. 127.0.0.0/16).
    #[arg(long, value_name = "CIDR")]
    sources: Option<String>,
    /// UDP, IPv4: every datagram from the next address of --sources (IP_PKTINFO on one
    /// socket), so the whole range appears, e.g. 127.0.0.0/8 for millions of sources.
    #[arg(long, requires = "sources")]
    source_per_message: bool,
    /// How many source addresses of --sources to use (one socket each for UDP).
    #[arg(long, value_name = "N", default_value_t = 64)]
    source_sockets: usize,
    /// Methods and optional weights: options,register,invite or options=8,invite=1.
    #[arg(long, default_value = "options,register,invite")]
    mix: String,
    /// INVITEs dial one of N distinct called numbers, as scanners repeat their target lists
    /// (0: a fresh random number for every INVITE).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    numbers: u32,
    /// Percent of malformed packets and SIP responses (0-100).
    #[arg(long, value_name = "PCT", default_value_t = 0.0)]
    malformed_share: f64,
    /// Read replies and record reply latency.
    #[arg(long)]
    responsive: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// TCP/TLS connections.
    #[arg(long, value_name = "N", default_value_t = 8)]
    connections: usize,
    /// Datagrams per sendmmsg (UDP) or messages per pacing step (TCP/TLS), 1-1024.
    #[arg(long, value_name = "N", default_value_t = 32)]
    batch: usize,
    /// PRNG seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds to wait for outstanding replies or the peer's close after sending.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    reply_wait: f64,
    /// Allow this exact non-loopback address as target (repeatable). Only for hosts you own.
    #[arg(long, value_name = "IP")]
    allow_non_loopback: Vec<IpAddr>,
}

#[derive(Args, Debug)]
struct SinkArgs {
    /// UDP address to receive on (port 0 picks one; the address is printed on stderr).
    #[arg(long, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Stop after this many seconds without a datagram, once one arrived (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    idle: f64,
    /// Stop once this many datagrams arrived.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// SO_RCVBUF to ask for, in bytes (forced past rmem_max when root).
    #[arg(long, value_name = "BYTES", default_value_t = SINK_RCVBUF_BYTES_DEFAULT)]
    rcvbuf: usize,
}

/// A refusal (exit 2) as opposed to a failure while running (exit 1).
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

fn refuse(message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Refusal(message.to_string()))
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| refuse(format!("{flag} must be a number of seconds >= 0")))
}

fn build_plan(args: &GeneratorArgs, mode: &str) -> anyhow::Result<RunPlan> {
    let target = resolve_target(&args.target, &args.allow_non_loopback).map_err(refuse)?;
    let mut source_cycle = None;
    let sources = match &args.sources {
        None => Vec::new(),
        Some(text) => {
            let range = SourceRange::parse(text).map_err(refuse)?;
            range
                .check(target, !args.allow_non_loopback.is_empty())
                .map_err(refuse)?;
            if args.source_per_message {
                if mode != "udp" {
                    return Err(refuse("--source-per-message is for udp only"));
                }
                source_cycle =
                    Some(range.cycle().ok_or_else(|| {
                        refuse("--source-per-message needs an IPv4 --sources range")
                    })?);
            }
            range.spread(args.source_sockets)
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        nanos.map_or(1, |nanos| nanos.as_nanos() as u64)
    });
    let plan = RunPlan {
        target,
        sources,
        source_cycle,
        count: args.count,
        duration: args
            .duration
            .map(|value| seconds(value, "--duration"))
            .transpose()?,
        rate_per_s: args.rate,
        batch: args.batch,
        responsive: args.responsive,
        mix: Mix::parse(&args.mix).map_err(refuse)?,
        malformed_ppm: percent_to_ppm(args.malformed_share)
            .ok_or_else(|| refuse("--malformed-share must be a percentage within 0..=100"))?,
        number_pool: args.numbers,
        seed,
        reply_wait: seconds(args.reply_wait, "--reply-wait")?,
        connections: args.connections,
    };
    plan.validate().map_err(refuse)?;
    Ok(plan)
}

/// Prints the report; a run where nothing went out and something failed is an error (exit 1).
fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{report}");
    }
    if report.sent == 0 && report.errors > 0 {
        anyhow::bail!("nothing was sent ({} errors)", report.errors);
    }
    Ok(())
}

fn run_sink_command(args: &SinkArgs) -> anyhow::Result<()> {
    let plan = SinkPlan {
        listen: args.listen,
        duration: args
            .duration
            .map(|value| seconds(value, "--duration"))
            .transpose()?,
        idle: seconds(args.idle, "--idle")?,
        count: args.count,
        rcvbuf_bytes: args.rcvbuf,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handler")?;
    }
    let socket = bind_sink(&plan).with_context(|| format!("binding sink on {}", plan.listen))?;
    eprintln!(
        "sentrypeer-loadgen sink: listening on {}",
        socket.local_addr()?
    );
    let report = run_sink(&socket, &plan, &stop).context("receiving")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

/// Runs a generator, with the live line on stderr when stderr is a terminal.
fn run_generator(
    plan: &RunPlan,
    replies_counted: bool,
    work: impl FnOnce(&RunPlan, &LiveCounters) -> anyhow::Result<Report>,
) -> anyhow::Result<Report> {
    let bounds = LiveBounds {
        count: plan.count,
        duration: plan.duration,
        replies_counted,
    };
    with_live_line(std::io::stderr().is_terminal(), &bounds, |live| {
        work(plan, live)
    })
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Udp(args) => {
            let plan = build_plan(args, "udp")?;
            let report = run_generator(&plan, plan.responsive, udp::run_udp)?;
            print_report(&report, args.json)
        }
        Command::Tcp(args) => {
            let plan = build_plan(args, "tcp")?;
            let report = run_generator(&plan, true, |plan, live| {
                stream::run_stream(plan, None, live)
            })?;
            print_report(&report, args.json)
        }
        Command::Tls(args) => {
            let plan = build_plan(args, "tls")?;
            let config = tls::danger_accept_any_server_cert_config().context("TLS client setup")?;
            let report = run_generator(&plan, true, |plan, live| {
                stream::run_stream(plan, Some(config), live)
            })?;
            print_report(&report, args.json)
        }
        Command::Sink(args) => run_sink_command(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Refusal>() => {
            eprintln!("sentrypeer-loadgen: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("sentrypeer-loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}
