//! The relay's Prometheus metrics (`GET /metrics`, text format): one [`Metrics`] per relay, shared by its manager
//! (sessions, quota refusals, the admin-flag lookup) and its web server (WebSockets, what they send, logins).
//!
//! Each relay has a registry of its own rather than the process's default one: the tests run several relays in one
//! process, and each must count only its own. Gauges of the sessions are computed when scraped (from the manager's
//! sessions), so they cannot drift from the sessions list; counters count as things happen.

use std::sync::Mutex;

use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use psgate_shared::api::{Availability, SessionState, Transport};

/// The store's operations timed in `psgate_store_seconds{op}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// A request's login check (every API request and WebSocket message that counts as activity).
    Login,
    /// The relay-admin flag (each WebSocket's hello, admin commands).
    IsAdmin,
}

impl StoreOp {
    fn label(self) -> &'static str {
        match self {
            StoreOp::Login => "login",
            StoreOp::IsAdmin => "is_admin",
        }
    }
}

/// A relay's metrics: its registry and the handles the relay updates.
pub struct Metrics {
    registry: Registry,
    sessions: IntGaugeVec,
    pipelines_running: IntGauge,
    websocket_connections: IntGauge,
    objects_out: IntCounter,
    bytes_out: IntCounter,
    quota_refusals: IntCounterVec,
    store_seconds: HistogramVec,
    taken_over: IntCounterVec,
    /// One scrape at a time: the session gauges are reset and set again by each.
    scraping: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("websocket_connections", &self.websocket_connections.get()).finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// A transport as the API names it (`psgate_sessions{transport}`).
fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Ssh => "ssh",
        Transport::Local => "local",
        Transport::Winrm => "winrm",
    }
}

const TRANSPORTS: [Transport; 3] = [Transport::Local, Transport::Ssh, Transport::Winrm];
const STATES: [SessionState; 5] = [SessionState::Opening, SessionState::Opened, SessionState::Disconnected, SessionState::Broken, SessionState::Closed];

/// Counts an open WebSocket while it lives (every way out of the connection drops it).
#[derive(Debug)]
pub struct OpenWebSocket(IntGauge);

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// A relay's metrics, in a registry of their own.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Registering fails only for a duplicate or malformed name: the names below are fixed and distinct.
        fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
            let metric = metric.expect("a valid metric");
            registry.register(Box::new(metric.clone())).expect("a metric registered once");
            metric
        }
        let sessions = registered(&registry, IntGaugeVec::new(Opts::new("psgate_sessions", "Sessions held by the relay, all users, by transport and state (PowerShell's words)"), &["transport", "state"]));
        let pipelines_running = registered(&registry, IntGauge::new("psgate_pipelines_running", "Sessions running a command (availability Busy)"));
        let websocket_connections = registered(&registry, IntGauge::new("psgate_websocket_connections", "Open WebSocket connections of browsers"));
        let objects_out = registered(&registry, IntCounter::new("psgate_objects_out_total", "Output objects sent to WebSocket clients"));
        let bytes_out = registered(&registry, IntCounter::new("psgate_bytes_out_total", "Bytes of JSON frames sent to WebSocket clients"));
        let quota_refusals = registered(&registry, IntCounterVec::new(Opts::new("psgate_quota_refusals_total", "Requests refused by a relay quota: New-PSSession beyond max_shells_per_user or max_concurrent_users, connections beyond max_connections (503)"), &["quota"]));
        // Login checks run on every request: from a fraction of a millisecond (SQLite) to a slow network (PostgreSQL).
        let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let store_seconds = registered(&registry, HistogramVec::new(HistogramOpts::new("psgate_store_seconds", "Latency of the store's hot paths (the login check, the admin flag)").buckets(buckets), &["op"]));
        let taken_over = registered(&registry, IntCounterVec::new(Opts::new("psgate_failovers_total", "WinRM sessions this relay took over from a relay gone: `stopped` (handed over cleanly) or `died` (silent, or never registered)"), &["how"]));
        Metrics { registry, sessions, pipelines_running, websocket_connections, objects_out, bytes_out, quota_refusals, store_seconds, taken_over, scraping: Mutex::new(()) }
    }

    /// A WebSocket opened: counted until the returned guard drops.
    pub fn websocket_opened(&self) -> OpenWebSocket {
        self.websocket_connections.inc();
        OpenWebSocket(self.websocket_connections.clone())
    }

    /// A frame of `bytes` bytes sent to a WebSocket client; `output`: it carries an output object.
    pub fn sent(&self, bytes: usize, output: bool) {
        self.bytes_out.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
        if output {
            self.objects_out.inc();
        }
    }

    /// A request refused by `quota` (its configuration key: `max_shells_per_user`, `max_connections`…).
    pub fn refused(&self, quota: &str) {
        self.quota_refusals.with_label_values(&[quota]).inc();
    }

    /// A WinRM session taken over from a relay gone; `died`: it had not handed it over.
    pub fn took_over(&self, died: bool) {
        self.taken_over.with_label_values(&[if died { "died" } else { "stopped" }]).inc();
    }

    /// Runs the store operation `fut`, timed as `op`.
    pub async fn time_store<T>(&self, op: StoreOp, fut: impl Future<Output = T>) -> T {
        let start = std::time::Instant::now();
        let out = fut.await;
        self.store_seconds.with_label_values(&[op.label()]).observe(start.elapsed().as_secs_f64());
        out
    }

    /// The exposition (Prometheus text format), the session gauges set from `sessions` (each session's transport,
    /// state and availability, at this moment). Every transport and state is shown, 0 when none, so that a series
    /// does not vanish when its last session closes.
    pub fn render(&self, sessions: impl IntoIterator<Item = (Transport, SessionState, Availability)>) -> String {
        let _one = self.scraping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.sessions.reset();
        for transport in TRANSPORTS {
            for state in STATES {
                self.sessions.with_label_values(&[transport_label(transport), psgate_lang::session::state_name(state)]).set(0);
            }
        }
        let mut busy = 0;
        for (transport, state, availability) in sessions {
            self.sessions.with_label_values(&[transport_label(transport), psgate_lang::session::state_name(state)]).inc();
            busy += i64::from(availability == Availability::Busy);
        }
        self.pipelines_running.set(busy);
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "encoding the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series `series` (its name and labels as the text shows them).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn each_relay_counts_its_own_and_sessions_are_counted_when_scraped() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let open = a.websocket_opened();
        a.sent(100, true);
        a.sent(20, false);
        a.refused("max_shells_per_user");
        a.time_store(StoreOp::Login, async {}).await;
        let text = a.render([(Transport::Local, SessionState::Opened, Availability::Busy), (Transport::Local, SessionState::Opened, Availability::Available)]);
        assert_eq!(value(&text, "psgate_sessions{state=\"Opened\",transport=\"local\"}"), Some(2.0), "{text}");
        assert_eq!(value(&text, "psgate_sessions{state=\"Broken\",transport=\"winrm\"}"), Some(0.0), "{text}");
        assert_eq!(value(&text, "psgate_pipelines_running"), Some(1.0));
        assert_eq!(value(&text, "psgate_websocket_connections"), Some(1.0));
        assert_eq!((value(&text, "psgate_objects_out_total"), value(&text, "psgate_bytes_out_total")), (Some(1.0), Some(120.0)));
        assert_eq!(value(&text, "psgate_quota_refusals_total{quota=\"max_shells_per_user\"}"), Some(1.0));
        assert_eq!(value(&text, "psgate_store_seconds_count{op=\"login\"}"), Some(1.0));
        drop(open);
        let text = a.render([]);
        assert_eq!(value(&text, "psgate_websocket_connections"), Some(0.0));
        assert_eq!(value(&text, "psgate_sessions{state=\"Opened\",transport=\"local\"}"), Some(0.0));
        let other = b.render([]);
        assert_eq!(value(&other, "psgate_bytes_out_total"), Some(0.0), "another relay's registry: {other}");
    }
}
