//! What a generator run does, decided once from the command line.
//!
//! Never: holds an unbounded plan (a count or a duration is always set, see [`RunPlan::new`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::message::Mix;
use crate::target::SourceCycle;

/// Largest `--batch`: the kernel's `UIO_MAXIOV` caps one `sendmmsg` at 1024 datagrams.
pub const BATCH_DATAGRAMS_MAX: usize = 1024;

/// A generator run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub target: SocketAddr,
    /// Local addresses to bind, round-robin; empty lets the kernel choose.
    pub sources: Vec<IpAddr>,
    /// UDP only: a new source address for every datagram (`IP_PKTINFO`), instead of `sources`.
    pub source_cycle: Option<SourceCycle>,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Messages per second in total; `None` is flat out.
    pub rate_per_s: Option<f64>,
    /// Messages per `sendmmsg` (UDP) or per pacing step (TCP/TLS).
    pub batch: usize,
    pub responsive: bool,
    pub mix: Mix,
    pub malformed_ppm: u32,
    /// INVITEs dial one of this many distinct numbers; 0: a fresh one each time.
    pub number_pool: u32,
    pub seed: u64,
    /// After sending: how long to wait for outstanding replies or the peer's close.
    pub reply_wait: Duration,
    /// TCP/TLS connections (UDP: sockets when `sources` is empty).
    pub connections: usize,
}

/// Why a plan was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanError(pub &'static str);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PlanError {}

impl RunPlan {
    /// Checks the bounds of a plan.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.count.is_none() && self.duration.is_none() {
            return Err(PlanError(
                "refusing to run unbounded: give --count N or --duration SECS (or both)",
            ));
        }
        if self.duration.is_some_and(|duration| duration.is_zero()) {
            return Err(PlanError("--duration must be above 0"));
        }
        if self
            .rate_per_s
            .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
        {
            return Err(PlanError(
                "--rate must be a positive number of messages per second",
            ));
        }
        if !(1..=BATCH_DATAGRAMS_MAX).contains(&self.batch) {
            return Err(PlanError("--batch must be within 1..=1024"));
        }
        if self.source_cycle.is_some() && !self.target.is_ipv4() {
            return Err(PlanError(
                "--source-per-message needs an IPv4 target and --sources",
            ));
        }
        if self.connections == 0 {
            return Err(PlanError("--connections must be at least 1"));
        }
        Ok(())
    }

    /// The sequence of local addresses to bind, one per socket (`None`: kernel's choice).
    pub fn bind_addresses(&self, sockets: usize) -> Vec<Option<IpAddr>> {
        if self.sources.is_empty() {
            return vec![None; sockets.max(1)];
        }
        (0..sockets.max(1))
            .map(|index| Some(self.sources[index % self.sources.len()]))
            .collect()
    }
}
