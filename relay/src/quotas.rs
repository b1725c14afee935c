//! The relay's session quotas, with the meanings of `WSMan:\localhost\Shell` and `…\Service` (psgate is itself a
//! remoting server for its users): `[quotas]` for every session, and an `[[allow]]` rule's own `quotas` for the
//! sessions to its targets, as a plugin's quotas sit under the shell's. A rule's quota can only tighten: both
//! apply, so the smaller wins.
//!
//! | key | Windows | what the relay does |
//! |---|---|---|
//! | `idle_timeout_secs` | Shell IdleTimeout | closes a session its user has not used (no pipeline, completion or attach) this long |
//! | `max_shell_run_time_secs` | Shell MaxShellRunTime (ignored by Windows) | closes a session this long after it opened |
//! | `max_shells_per_user` | Shell MaxShellsPerUser | refuses New-PSSession beyond it |
//! | `max_concurrent_users` | Shell MaxConcurrentUsers | refuses a further user's first session |
//! | `max_connections` | Service MaxConnections | answers 503 with `Retry-After` beyond it (WebSockets and API requests) |
//! | `max_memory_per_shell_mb` | Shell MaxMemoryPerShellMB | bounds the output the relay keeps for a command of the session |
//!
//! Without a key there is no limit. Windows' MaxProcessesPerShell and MaxConcurrentOperationsPerUser have no meaning
//! for the relay: it runs no processes for a shell, and the targets enforce their own.

use psgate_shared::api::{SessionState, Transport};
use serde::Deserialize;

/// `[quotas]`, or an `[[allow]]` rule's `quotas`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// IdleTimeout, in seconds.
    pub idle_timeout_secs: Option<u64>,
    /// MaxShellRunTime, in seconds.
    pub max_shell_run_time_secs: Option<u64>,
    /// MaxShellsPerUser.
    pub max_shells_per_user: Option<u32>,
    /// MaxConcurrentUsers.
    pub max_concurrent_users: Option<u32>,
    /// MaxConnections (`[quotas]` only).
    pub max_connections: Option<u32>,
    /// MaxMemoryPerShellMB: the output the relay keeps for a command of the session, in MiB (beyond it the oldest is
    /// dropped, or, while a page follows the command, the target waits for it).
    pub max_memory_per_shell_mb: Option<u32>,
    /// How long before an idle or run-time close the user's pages are warned, in seconds (`[quotas]` only;
    /// default 300, and never more than half the limit).
    pub warning_secs: Option<u64>,
}

/// `[quotas] max_connections` (MaxConnections): a permit per API request in flight and per open WebSocket; beyond
/// the limit, a refusal at once (the web server answers 503 with `Retry-After`), never a wait.
#[derive(Clone, Debug, Default)]
pub struct Connections(Option<(std::sync::Arc<tokio::sync::Semaphore>, u32)>);

impl Connections {
    /// At most `limit` at once (`None`: no limit).
    pub fn new(limit: Option<u32>) -> Connections {
        Connections(limit.map(|n| (std::sync::Arc::new(tokio::sync::Semaphore::new(n as usize)), n)))
    }

    /// A permit, held as long as the request or WebSocket lasts; `Err`: refused, with the limit.
    pub fn take(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, u32> {
        let Some((permits, limit)) = &self.0 else { return Ok(None) };
        permits.clone().try_acquire_owned().map(Some).map_err(|_| {
            tracing::warn!(limit, "a connection refused: max_connections reached");
            *limit
        })
    }

    /// The connections open now (`None`: not counted, no limit).
    pub fn in_use(&self) -> Option<u64> {
        self.0.as_ref().map(|(p, n)| u64::from(*n).saturating_sub(p.available_permits() as u64))
    }
}

/// The default lead time of a close warning.
pub const DEFAULT_WARNING_SECS: u64 = 300;

impl Quotas {
    /// Checks the values (`what`: where they are, for the message).
    pub fn validate(&self, what: &str, global: bool) -> Result<(), String> {
        let year = 366 * 24 * 3600;
        for (key, v) in [("idle_timeout_secs", self.idle_timeout_secs), ("max_shell_run_time_secs", self.max_shell_run_time_secs), ("warning_secs", self.warning_secs)] {
            match v {
                Some(0) if key != "warning_secs" => return Err(format!("{what} {key} must be at least 1")),
                Some(v) if v > year => return Err(format!("{what} {key} is more than a year")),
                _ => {}
            }
        }
        for (key, v) in [
            ("max_shells_per_user", self.max_shells_per_user),
            ("max_concurrent_users", self.max_concurrent_users),
            ("max_connections", self.max_connections),
            ("max_memory_per_shell_mb", self.max_memory_per_shell_mb),
        ] {
            if v == Some(0) {
                return Err(format!("{what} {key} must be at least 1 (leave it out for no limit)"));
            }
        }
        if !global && (self.max_connections.is_some() || self.warning_secs.is_some()) {
            return Err(format!("{what}: max_connections and warning_secs are the relay's own; set them in [quotas]"));
        }
        Ok(())
    }

    /// These quotas tightened by `other`'s (the smaller of each).
    pub fn tightened(&self, other: &Quotas) -> Quotas {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Quotas {
            idle_timeout_secs: min(self.idle_timeout_secs, other.idle_timeout_secs),
            max_shell_run_time_secs: min(self.max_shell_run_time_secs, other.max_shell_run_time_secs),
            max_shells_per_user: min(self.max_shells_per_user, other.max_shells_per_user),
            max_concurrent_users: min(self.max_concurrent_users, other.max_concurrent_users),
            max_connections: min(self.max_connections, other.max_connections),
            max_memory_per_shell_mb: min(self.max_memory_per_shell_mb, other.max_memory_per_shell_mb),
            warning_secs: min(self.warning_secs, other.warning_secs),
        }
    }
}

/// A session as the quotas count it: its user, and the allow-list rule its target matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held<'a> {
    /// Its user.
    pub owner: &'a str,
    /// The index of the first `[[allow]]` rule its target matched.
    pub rule: Option<usize>,
    /// Its state (closed and broken sessions hold nothing).
    pub state: SessionState,
}

impl Held<'_> {
    fn live(&self) -> bool {
        !matches!(self.state, SessionState::Closed | SessionState::Broken)
    }
}

/// Which quota a New-PSSession would break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// MaxShellsPerUser: the limit, and the rule whose quota it is (`None`: `[quotas]`).
    MaxShellsPerUser(u32, Option<usize>),
    /// MaxConcurrentUsers: the limit, and the rule whose quota it is.
    MaxConcurrentUsers(u32, Option<usize>),
}

impl Refusal {
    /// The configuration key of the quota (the metrics' `quota` label).
    pub fn quota(&self) -> &'static str {
        match self {
            Refusal::MaxShellsPerUser(..) => "max_shells_per_user",
            Refusal::MaxConcurrentUsers(..) => "max_concurrent_users",
        }
    }

    /// PowerShell's words, and which setting says so.
    pub fn message(&self) -> String {
        let place = |rule: &Option<usize>| match rule {
            None => "[quotas]".to_owned(),
            Some(i) => format!("the quotas of [[allow]] rule {}", i + 1),
        };
        match self {
            Refusal::MaxShellsPerUser(n, rule) => format!(
                "This user is allowed a maximum number of {n} concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user. (psgate relay: max_shells_per_user in {})",
                place(rule)
            ),
            Refusal::MaxConcurrentUsers(n, rule) => format!(
                "The maximum number of users ({n}) executing shell operations has been exceeded. Retry later or raise the quota for this relay. (psgate relay: max_concurrent_users in {})",
                place(rule)
            ),
        }
    }
}

/// Whether `owner` may open one more session to a target matched by `rule`, given the sessions held now:
/// `[quotas]` counts every session, a rule's quotas the sessions to that rule's targets.
pub fn admit<'a>(global: &Quotas, rule: Option<(usize, &Quotas)>, owner: &str, held: impl Iterator<Item = Held<'a>> + Clone) -> Result<(), Refusal> {
    let scopes = std::iter::once((None, global)).chain(rule.map(|(i, q)| (Some(i), q)));
    for (scope, quotas) in scopes {
        if quotas.max_shells_per_user.is_none() && quotas.max_concurrent_users.is_none() {
            continue;
        }
        // One pass: the user's sessions in the scope, and (only when that quota is set) who holds any.
        let (mut mine, mut users) = (0usize, std::collections::HashSet::new());
        for h in held.clone().filter(|h| h.live() && (scope.is_none() || h.rule == scope)) {
            if h.owner == owner {
                mine += 1;
            } else if quotas.max_concurrent_users.is_some() {
                users.insert(h.owner);
            }
        }
        if let Some(max) = quotas.max_shells_per_user
            && mine >= max as usize
        {
            return Err(Refusal::MaxShellsPerUser(max, scope));
        }
        // Another user may join only while fewer than the limit hold sessions; a holder is already counted.
        if let Some(max) = quotas.max_concurrent_users
            && mine == 0
            && users.len() >= max as usize
        {
            return Err(Refusal::MaxConcurrentUsers(max, scope));
        }
    }
    Ok(())
}

/// The index of the first allow-list rule a target matches (what its rule quotas are).
pub fn rule_of(rules: &[crate::config::AllowRule], host: &str, port: u16, transport: Transport) -> Option<usize> {
    rules.iter().position(|r| r.allows(host, port, transport))
}

/// What a session's quota clock says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing to do.
    Nothing,
    /// Warn the user's pages: the session will be closed (the text follows "The session X (Id n) ").
    Warn(String),
    /// The warning no longer holds (the session was used): clear it.
    Clear,
    /// Close the session, for this reason.
    Close(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Idle,
    RunTime,
}

/// A session's IdleTimeout and MaxShellRunTime clock (tokio's time, so tests run it paused).
#[derive(Clone, Debug)]
pub struct Clock {
    idle: Option<std::time::Duration>,
    run: Option<std::time::Duration>,
    warning: std::time::Duration,
    opened: tokio::time::Instant,
    /// The close deadline the user was warned of.
    warned: Option<tokio::time::Instant>,
}

impl Clock {
    /// The clock of a session opened at `opened` under `quotas`.
    pub fn new(quotas: &Quotas, opened: tokio::time::Instant) -> Clock {
        let secs = std::time::Duration::from_secs;
        Clock {
            idle: quotas.idle_timeout_secs.map(secs),
            run: quotas.max_shell_run_time_secs.map(secs),
            warning: secs(quotas.warning_secs.unwrap_or(DEFAULT_WARNING_SECS)),
            opened,
            warned: None,
        }
    }

    /// The first close ahead: when, and for which limit. `busy`: a pipeline runs (not idle).
    fn deadline(&self, activity: tokio::time::Instant, busy: bool) -> Option<(tokio::time::Instant, Limit)> {
        let idle = self.idle.filter(|_| !busy).map(|d| (activity + d, Limit::Idle));
        let run = self.run.map(|d| (self.opened + d, Limit::RunTime));
        match (idle, run) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The warning's lead for a limit: `warning_secs`, at most half the limit.
    fn lead(&self, limit: Limit) -> std::time::Duration {
        let whole = match limit {
            Limit::Idle => self.idle,
            Limit::RunTime => self.run,
        };
        whole.map_or(self.warning, |w| self.warning.min(w / 2))
    }

    /// What is due at `now`, given the user's last request (`activity`).
    pub fn due(&mut self, activity: tokio::time::Instant, busy: bool, now: tokio::time::Instant) -> Due {
        let Some((at, limit)) = self.deadline(activity, busy) else {
            return if self.warned.take().is_some() { Due::Clear } else { Due::Nothing };
        };
        if now >= at {
            return Due::Close(match limit {
                Limit::Idle => format!("Closed by the relay: idle for {}, its IdleTimeout (idle_timeout_secs).", human(self.idle.unwrap_or_default())),
                Limit::RunTime => format!("Closed by the relay: open for {}, its MaxShellRunTime (max_shell_run_time_secs).", human(self.run.unwrap_or_default())),
            });
        }
        if now + self.lead(limit) >= at {
            if self.warned == Some(at) {
                return Due::Nothing;
            }
            self.warned = Some(at);
            let left = human(at - now);
            return Due::Warn(match limit {
                Limit::Idle => format!(
                    "will be closed in {left}: the relay closes a session idle for {} (its IdleTimeout, idle_timeout_secs). Use it to keep it open.",
                    human(self.idle.unwrap_or_default())
                ),
                Limit::RunTime => format!("will be closed in {left}: the relay closes a session open for {} (its MaxShellRunTime, max_shell_run_time_secs).", human(self.run.unwrap_or_default())),
            });
        }
        if self.warned.take().is_some() { Due::Clear } else { Due::Nothing }
    }

    /// Whether a quota counts down for this session (IdleTimeout or MaxShellRunTime).
    pub fn counts(&self) -> bool {
        self.idle.is_some() || self.run.is_some()
    }

    /// When to look again: the next warning or close (`None`: never).
    pub fn next_wake(&self, activity: tokio::time::Instant, busy: bool) -> Option<tokio::time::Instant> {
        let (at, limit) = self.deadline(activity, busy)?;
        Some(if self.warned == Some(at) { at } else { at.checked_sub(self.lead(limit)).unwrap_or(at) })
    }
}

/// The time the quotas count in: tokio's monotonic clock plus an offset that only a test moves ([`QuotaTime::advance`]),
/// so an IdleTimeout of an hour is tested without waiting an hour, with real sessions to real targets (which a paused
/// tokio clock would break: it jumps whenever the runtime waits for the network).
#[derive(Debug)]
pub struct QuotaTime {
    offset: std::sync::Mutex<std::time::Duration>,
    moved: tokio::sync::watch::Sender<u64>,
}

impl Default for QuotaTime {
    fn default() -> QuotaTime {
        QuotaTime { offset: std::sync::Mutex::default(), moved: tokio::sync::watch::Sender::new(0) }
    }
}

impl QuotaTime {
    /// Now, as the quotas see it.
    pub fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the quotas' time `by` forward (tests): every session's clock looks again at once.
    pub fn advance(&self, by: std::time::Duration) {
        *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += by;
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Told each time the time is moved.
    pub fn moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.moved.subscribe()
    }

    /// Sleeps until `at` in the quotas' time, or until the time is moved (then the caller looks again).
    pub async fn sleep_until(&self, at: tokio::time::Instant, moves: &mut tokio::sync::watch::Receiver<u64>) {
        let real = tokio::time::Instant::now() + at.saturating_duration_since(self.now());
        tokio::select! {
            () = tokio::time::sleep_until(real) => {}
            _ = moves.changed() => {}
        }
    }
}

/// `45 s`, `5 min`, `2 h 30 min` (rounded up to the second).
pub fn human(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s => format!("{} h {} min", s / 3600, (s % 3600).div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn moving_the_quotas_time_moves_now_and_wakes_a_sleeper_at_once() {
        let time = std::sync::Arc::new(QuotaTime::default());
        let start = time.now();
        let at = start + std::time::Duration::from_secs(3600);
        let mut moves = time.moves();
        let sleeper = tokio::spawn({
            let time = time.clone();
            async move { time.sleep_until(at, &mut moves).await }
        });
        tokio::task::yield_now().await;
        time.advance(std::time::Duration::from_secs(3600));
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper).await.expect("woken, not an hour later").expect("joined");
        assert!(time.now() >= at, "an hour on");
    }

    fn held<'a>(owner: &'a str, rule: usize, state: SessionState) -> Held<'a> {
        Held { owner, rule: Some(rule), state }
    }

    #[test]
    fn max_shells_per_user_counts_the_users_live_sessions() {
        let q = Quotas { max_shells_per_user: Some(2), ..Quotas::default() };
        let now = [held("ada", 0, SessionState::Opened), held("ada", 0, SessionState::Broken), held("bob", 0, SessionState::Opened)];
        assert_eq!(admit(&q, None, "ada", now.iter().copied()), Ok(()));
        let now = [held("ada", 0, SessionState::Opened), held("ada", 1, SessionState::Disconnected)];
        let refused = admit(&q, None, "ada", now.iter().copied()).expect_err("refused");
        assert_eq!(refused, Refusal::MaxShellsPerUser(2, None));
        assert!(refused.message().starts_with("This user is allowed a maximum number of 2 concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user."));
    }

    #[test]
    fn a_rules_quota_counts_its_own_targets_and_the_smaller_wins() {
        let global = Quotas { max_shells_per_user: Some(3), ..Quotas::default() };
        let rule = Quotas { max_shells_per_user: Some(1), ..Quotas::default() };
        let now = [held("ada", 1, SessionState::Opened)];
        // One session elsewhere: the rule's target may still take one.
        assert_eq!(admit(&global, Some((0, &rule)), "ada", now.iter().copied()), Ok(()));
        let now = [held("ada", 0, SessionState::Opened)];
        assert_eq!(admit(&global, Some((0, &rule)), "ada", now.iter().copied()), Err(Refusal::MaxShellsPerUser(1, Some(0))));
        // A looser rule does not loosen [quotas].
        let loose = Quotas { max_shells_per_user: Some(10), ..Quotas::default() };
        let now = [held("ada", 0, SessionState::Opened), held("ada", 0, SessionState::Opened), held("ada", 0, SessionState::Opening)];
        assert_eq!(admit(&global, Some((0, &loose)), "ada", now.iter().copied()), Err(Refusal::MaxShellsPerUser(3, None)));
        assert_eq!(global.tightened(&loose).max_shells_per_user, Some(3));
        assert_eq!(global.tightened(&rule).max_shells_per_user, Some(1));
    }

    #[test]
    fn max_concurrent_users_lets_a_holder_in_and_the_next_user_not() {
        let q = Quotas { max_concurrent_users: Some(2), ..Quotas::default() };
        let now = [held("ada", 0, SessionState::Opened), held("bob", 0, SessionState::Opened), held("cy", 0, SessionState::Closed)];
        assert_eq!(admit(&q, None, "ada", now.iter().copied()), Ok(()));
        let refused = admit(&q, None, "cy", now.iter().copied()).expect_err("refused");
        assert_eq!(refused, Refusal::MaxConcurrentUsers(2, None));
        assert!(refused.message().contains("The maximum number of users (2) executing shell operations has been exceeded."));
    }

    #[test]
    fn the_clock_warns_then_closes_and_activity_moves_it() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let q = Quotas { idle_timeout_secs: Some(600), max_shell_run_time_secs: Some(3600), warning_secs: Some(120), ..Quotas::default() };
        let mut c = Clock::new(&q, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(c.next_wake(t0, false), Some(at(480)));
        assert_eq!(c.due(t0, false, at(479)), Due::Nothing);
        let Due::Warn(w) = c.due(t0, false, at(480)) else { panic!("a warning") };
        assert!(w.starts_with("will be closed in 2 min: the relay closes a session idle for 10 min"), "{w}");
        assert_eq!(c.due(t0, false, at(500)), Due::Nothing, "warned once");
        assert_eq!(c.next_wake(t0, false), Some(at(600)));
        // Used: the warning is taken back, the idle clock starts again.
        assert_eq!(c.due(at(550), false, at(550)), Due::Clear);
        // Busy: no idle close; the run time still counts.
        assert_eq!(c.next_wake(at(550), true), Some(at(3480)));
        let Due::Close(why) = c.due(at(550), false, at(1150)) else { panic!("a close") };
        assert_eq!(why, "Closed by the relay: idle for 10 min, its IdleTimeout (idle_timeout_secs).");
        let Due::Close(why) = c.due(at(3599), true, at(3600)) else { panic!("a close") };
        assert!(why.contains("open for 1 h, its MaxShellRunTime"), "{why}");
        // The lead is at most half the limit; no quota, no wake.
        let c = Clock::new(&Quotas { idle_timeout_secs: Some(60), ..Quotas::default() }, t0);
        assert_eq!(c.next_wake(t0, false), Some(at(30)));
        assert_eq!(Clock::new(&Quotas::default(), t0).next_wake(t0, false), None);
        assert_eq!((human(Duration::from_secs(90)), human(Duration::from_secs(9000)), human(Duration::from_millis(1500))), ("1 min 30 s".into(), "2 h 30 min".into(), "2 s".into()));
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let q = Quotas { max_shells_per_user: Some(0), ..Quotas::default() };
        assert!(q.validate("[quotas]", true).expect_err("refused").contains("max_shells_per_user must be at least 1"));
        let q = Quotas { max_connections: Some(5), ..Quotas::default() };
        assert!(q.validate("[[allow]] rule 1 quotas", false).expect_err("refused").contains("set them in [quotas]"));
        assert!(q.validate("[quotas]", true).is_ok());
        let q = Quotas { idle_timeout_secs: Some(400 * 24 * 3600), ..Quotas::default() };
        assert!(q.validate("[quotas]", true).expect_err("refused").contains("more than a year"));
    }
}
