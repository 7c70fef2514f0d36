//! What reached the token endpoints, and how many at once: the load a client puts on the IdP and
//! on each authorization server, as those servers see it. Benchmarks read it to show that grants
//! and refreshes are spread over time and never exceed the client's concurrency cap.
//!
//! Every component's fault middleware reports each token-endpoint request here, from its arrival
//! (before the injected latency, which stands for the network) to its answer. The peak number in
//! flight is always kept, per component and over all of them; the per-request log is kept only
//! when recording was asked for ([`Traffic::recording`]), and is capped so a long-running demo
//! testbed cannot grow without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// At most this many requests are logged; later ones only count in [`TrafficSummary::dropped`].
const MAX_LOGGED: usize = 1_000_000;

/// One token-endpoint request, in milliseconds since the testbed started.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenRequest {
    /// `idp`, or the authorization server's name.
    pub component: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Requests in flight at this component when this one arrived, itself included.
    pub in_flight: usize,
    /// Requests in flight at every component together when this one arrived, itself included.
    pub in_flight_all: usize,
}

/// Peaks and (when recording) the request log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrafficSummary {
    /// The most requests ever in flight at one component, by component.
    pub peak_in_flight: HashMap<String, usize>,
    /// The most requests ever in flight at all components together.
    pub peak_in_flight_all: usize,
    /// Requests answered, by component.
    pub total: HashMap<String, u64>,
    /// Requests not logged because the log was full.
    pub dropped: u64,
    /// The log (empty unless recording).
    pub requests: Vec<TokenRequest>,
}

#[derive(Debug)]
struct TrafficState {
    started: Instant,
    record: bool,
    in_flight: HashMap<String, usize>,
    in_flight_all: usize,
    summary: TrafficSummary,
}

/// The shared recorder. Cheap to clone; clones share state.
#[derive(Clone, Debug)]
pub struct Traffic {
    state: Arc<Mutex<TrafficState>>,
}

impl Default for Traffic {
    fn default() -> Self {
        Self::new(false)
    }
}

/// A request in flight; dropping it (answered, or the connection went away) ends it.
pub(crate) struct InFlight {
    traffic: Traffic,
    component: Arc<str>,
    start_ms: u64,
    in_flight: usize,
    in_flight_all: usize,
}

impl Traffic {
    fn new(record: bool) -> Self {
        Self {
            state: Arc::new(Mutex::new(TrafficState {
                started: Instant::now(),
                record,
                in_flight: HashMap::new(),
                in_flight_all: 0,
                summary: TrafficSummary::default(),
            })),
        }
    }

    /// A recorder that also logs every request (peaks are always kept).
    pub fn recording() -> Self {
        Self::new(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrafficState> {
        // A panic while holding this lock leaves only counters behind; they stay usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token request arrived at `component`.
    pub(crate) fn begin(&self, component: &Arc<str>) -> InFlight {
        let mut state = self.lock();
        let start_ms = state.started.elapsed().as_millis() as u64;
        let now = {
            let n = state.in_flight.entry(component.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        state.in_flight_all += 1;
        let all = state.in_flight_all;
        let peak = state
            .summary
            .peak_in_flight
            .entry(component.to_string())
            .or_insert(0);
        *peak = (*peak).max(now);
        state.summary.peak_in_flight_all = state.summary.peak_in_flight_all.max(all);
        InFlight {
            traffic: self.clone(),
            component: Arc::clone(component),
            start_ms,
            in_flight: now,
            in_flight_all: all,
        }
    }

    /// Peaks, totals and the log so far.
    pub fn summary(&self) -> TrafficSummary {
        self.lock().summary.clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.traffic.lock();
        let end_ms = state.started.elapsed().as_millis() as u64;
        if let Some(n) = state.in_flight.get_mut(&*self.component) {
            *n = n.saturating_sub(1);
        }
        state.in_flight_all = state.in_flight_all.saturating_sub(1);
        *state
            .summary
            .total
            .entry(self.component.to_string())
            .or_insert(0) += 1;
        if !state.record {
            return;
        }
        if state.summary.requests.len() >= MAX_LOGGED {
            state.summary.dropped += 1;
            return;
        }
        state.summary.requests.push(TokenRequest {
            component: self.component.to_string(),
            start_ms: self.start_ms,
            end_ms,
            in_flight: self.in_flight,
            in_flight_all: self.in_flight_all,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_count_overlapping_requests_per_component_and_overall() {
        let traffic = Traffic::recording();
        let idp: Arc<str> = Arc::from("idp");
        let docs: Arc<str> = Arc::from("docs");
        let a = traffic.begin(&idp);
        let b = traffic.begin(&idp);
        let c = traffic.begin(&docs);
        drop(a);
        let d = traffic.begin(&idp);
        drop((b, c, d));
        let summary = traffic.summary();
        assert_eq!(summary.peak_in_flight["idp"], 2);
        assert_eq!(summary.peak_in_flight["docs"], 1);
        assert_eq!(summary.peak_in_flight_all, 3);
        assert_eq!(summary.total["idp"], 3);
        assert_eq!(summary.requests.len(), 4);
        assert_eq!(summary.requests[0].in_flight, 1);
    }

    #[test]
    fn without_recording_only_peaks_and_totals_are_kept() {
        let traffic = Traffic::default();
        let idp: Arc<str> = Arc::from("idp");
        drop(traffic.begin(&idp));
        let summary = traffic.summary();
        assert!(summary.requests.is_empty());
        assert_eq!(summary.total["idp"], 1);
    }
}
