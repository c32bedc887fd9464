//! The NATS publisher's pure decisions: which events it publishes, how long it backs off,
//! and how far an acknowledged prefix moves the cursor (when it is written: `store::CommitCursor`).

use std::time::Duration;

use uuid::Uuid;

/// Whether the publisher sends this event: only events this node created (events received
/// from P2P peers are theirs to publish, and a hub never publishes).
pub(crate) fn is_own(event_node_id: Uuid, own_node_id: Uuid) -> bool {
    event_node_id == own_node_id
}

/// The wait after the `failures`-th failed round in a row (1 for the first): doubling from
/// `initial` up to `max`, the upper half jitter from `random` (as the webhook's).
pub(crate) fn backoff_delay(
    failures: u32,
    initial: Duration,
    max: Duration,
    random: u64,
) -> Duration {
    crate::webhook::backoff_delay(failures, initial, max, random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_publish_policy() {
        let own = Uuid::from_u128(1);
        assert!(is_own(own, own));
        assert!(!is_own(Uuid::from_u128(2), own));
        let second = Duration::from_secs(1);
        for failures in 1..40 {
            let delay = backoff_delay(failures, second / 10, second * 10, u64::MAX);
            assert!(delay <= second * 10, "{failures}: {delay:?}");
        }
    }
}
