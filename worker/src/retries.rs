//! Counting the retries object_store makes on our behalf.
//!
//! object_store retries throttling (503 SlowDown, 429), other 5xx, connection errors and
//! timeouts inside its client and says so only in a log event (target
//! `object_store::client::retry`). A tracing layer counts those events, so the count reaches
//! `/metrics`, the heartbeat, `bkctl workers` and `bkctl watch` whatever the log filter is.
//! The count is per process.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::{Context, Layer};

static STORE_RETRIES: AtomicU64 = AtomicU64::new(0);

/// The target object_store logs its retries under.
const RETRY_TARGET: &str = "object_store::client::retry";

/// Object-store requests retried by this process so far.
pub fn store_retries() -> u64 {
    STORE_RETRIES.load(Ordering::Relaxed)
}

/// Counts every event it is given (its filter lets only retry events through).
#[derive(Debug, Default)]
pub struct RetryCounter;

impl<S: Subscriber> Layer<S> for RetryCounter {
    fn on_event(&self, _event: &Event<'_>, _context: Context<'_, S>) {
        STORE_RETRIES.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counting layer with its own filter, so it sees retry events even when the log filter
/// hides them, and nothing else.
pub fn retry_counting_layer<S>() -> Filtered<RetryCounter, Targets, S>
where
    S: Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    RetryCounter.with_filter(Targets::new().with_target(RETRY_TARGET, tracing::Level::TRACE))
}

/// Installs a subscriber that only counts (for tests of the counter).
#[cfg(test)]
fn counting_subscriber() -> impl Subscriber {
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry().with(retry_counting_layer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_only_object_store_retry_events_are_counted() {
        let before = store_retries();
        tracing::subscriber::with_default(counting_subscriber(), || {
            tracing::info!(target: "object_store::client::retry", "backing off, retry 1 of 10");
            tracing::info!(target: "object_store::client::retry", "backing off, retry 2 of 10");
            tracing::info!(target: "hyper", "unrelated");
        });
        assert_eq!(store_retries() - before, 2);
    }
}
