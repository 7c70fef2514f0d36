//! A month of people: what each user's agent spends in ID-JAGs per server when refreshes follow
//! use (`settings.idle_after_secs`) against keeping every server warm, and what the IdP sees.
//!
//! The usage model (every draw from a seeded generator): each user uses a few of the 20 servers
//! (1 to 5, the popular ones more often); on a workday the laptop wakes between 08:30 and 09:30
//! and sleeps between 17:00 and 19:00, and sleeps all weekend; on 15 % of workdays the user opens
//! no AI client at all; otherwise each of their servers is used on 60 % of days, in 1 to 4 bursts
//! that start anywhere in the awake day and last 5 to 90 minutes, a client asking for a token every
//! 20 s to 5 min during a burst. The agent restarts (a reboot, a fresh sign-in) on the first
//! morning of each week, and a sign-in grants every server once. A 20-minute outage hits the
//! second workday at 13:00.
//!
//! Every decision is the engine's, from `lanyard-schedule`: when a token is refreshed
//! ([`RefreshRule::renew_in_use_at`] with [`RefreshRule::in_use_lead`] when refreshes follow use,
//! [`RefreshRule::refresh_at`] when every server is kept warm), whether a due refresh goes
//! ([`in_use`], [`near_budget`]), when a failed grant is retried ([`RetryRule::after_failure`]:
//! a client may try again from its `retry_at`, the agent itself at its `due_at`) and when a
//! client may try again sooner ([`RetryRule::client_may_retry`]). Each server of each agent is
//! played on its own: a due refresh fires at the first awake second at or after it (the engine
//! catches up on wake-up); a request with a usable token is served, and re-arms a server that
//! idled (its refresh, already due, goes at once); a request without one mints and waits. The
//! session's own renewals are counted at the IdP, one per ID-token refresh while awake (they
//! spend no ID-JAG). With `use_refresh_token`, a renewal within [`may_use_refresh_token`]'s bound
//! of the chain's first ID-JAG spends none (the chain lives in memory: an agent restart ends it).
//! A grant is taken to last [`MonthConfig::grant_secs`] for the lead. Not modelled: host caps
//! (the day simulation shows they change nothing measurable) and a session renewal failing
//! during the outage, and a success of one server ending the agent's failing streak for the
//! others while the outage lasts (there is none: every request fails).

use lanyard_schedule::{
    in_use, may_use_refresh_token, near_budget, Backoff, RefreshRule, RetryRule, Standing,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DAY: u64 = 86_400;
const HOUR: u64 = 3600;
const MIN: u64 = 60;

/// The month's settings.
#[derive(Debug, Clone)]
pub struct MonthConfig {
    pub users: usize,
    pub servers: usize,
    /// The authorization server of each server (index).
    pub server_as: Vec<usize>,
    pub as_count: usize,
    pub days: u64,
    pub access_token_secs: u64,
    pub id_token_secs: u64,
    pub refresh: RefreshRule,
    pub retry: RetryRule,
    /// `settings.idle_after_secs`; 0 keeps every server warm (before use-driven refresh).
    pub idle_after_secs: u64,
    /// Renew a server in use late in its token's life ([`RefreshRule::renew_in_use_at`]); off:
    /// at 45–75 % of it, as every token was before ([`RefreshRule::refresh_at`]).
    pub late_renewal: bool,
    pub budget: Option<u64>,
    /// `servers[].use_refresh_token` on every server, with authorization servers whose refresh
    /// tokens outlive the bound: a renewal within it spends no ID-JAG.
    pub use_refresh_token: bool,
    /// A client's request needs this much life left in the token (the engine's `min_ttl`).
    pub min_ttl: u64,
    /// How long one grant takes (exchange and jwt-bearer), as the engine would measure it: it
    /// sizes the lead of a renewal in use.
    pub grant_secs: f64,
    /// The clock skew the engine measured (agent against IdP).
    pub skew_secs: u64,
    /// The outage, as (day, second of day, length).
    pub outage: Option<(u64, u64, u64)>,
    pub seed: u64,
}

impl MonthConfig {
    /// The month: `users` people × 20 servers on 7 authorization servers (as in the day
    /// simulation), 1 h tokens, 30 days from a Monday, the policy's defaults.
    pub fn standard(users: usize) -> Self {
        let day = crate::FleetConfig::standard(1);
        MonthConfig {
            users,
            servers: day.server_as.len(),
            as_count: day.as_names.len(),
            server_as: day.server_as,
            days: 30,
            access_token_secs: 3600,
            id_token_secs: 3600,
            refresh: RefreshRule::default(),
            retry: RetryRule {
                backoff: Backoff::default(),
                recovery_jitter_secs: lanyard_schedule::defaults::RECOVERY_JITTER_SECS,
            },
            idle_after_secs: lanyard_schedule::defaults::IDLE_AFTER_SECS,
            late_renewal: true,
            budget: None,
            use_refresh_token: false,
            min_ttl: lanyard_schedule::CLIENT_MIN_TTL_SECS,
            grant_secs: 0.5,
            skew_secs: 0,
            outage: Some((1, 13 * HOUR, 20 * MIN)),
            seed: 11,
        }
    }

    fn in_outage(&self, t: u64) -> bool {
        self.outage
            .is_some_and(|(day, at, len)| (day * DAY + at..day * DAY + at + len).contains(&t))
    }

    /// When a token granted at `t` and expiring at `expires_at` is renewed, as the engine decides.
    fn renewal_at(&self, t: u64, expires_at: u64, draw: f64) -> u64 {
        if self.idle_after_secs == 0 || !self.late_renewal {
            return self.refresh.refresh_at(t, expires_at, draw);
        }
        let lead = self
            .refresh
            .in_use_lead(&self.retry.backoff, self.grant_secs, self.skew_secs);
        self.refresh.renew_in_use_at(t, expires_at, lead, draw)
    }
}

/// What the month cost.
#[derive(Debug, Clone)]
pub struct MonthReport {
    /// ID-JAGs per (user, server), row-major.
    pub id_jags: Vec<u32>,
    /// Per user, the servers they use.
    pub used: Vec<Vec<usize>>,
    /// ID-JAGs per authorization server over the month.
    pub per_as: Vec<u64>,
    /// Client requests answered.
    pub requests: u64,
    /// Of those, how many waited for a mint (the first request of a burst on an idle server).
    pub waited: u64,
    /// Requests that got no token: the outage, or the half minute after a failed attempt.
    pub refused: u64,
    /// IdP requests per second on the outage day (sign-ins, session renewals, exchanges).
    pub idp_day: Vec<u32>,
    /// Servers per user.
    pub servers: usize,
}

impl MonthReport {
    /// ID-JAGs of user `u` on server `s`.
    pub fn of(&self, u: usize, s: usize) -> u32 {
        self.id_jags[u * self.servers + s]
    }

    /// Per user: the most any one server spent (what a per-app cap such as Okta's meets first).
    pub fn busiest_server_per_user(&self) -> Vec<u32> {
        (0..self.used.len())
            .map(|u| (0..self.servers).map(|s| self.of(u, s)).max().unwrap_or(0))
            .collect()
    }

    /// Per user: the mean over all 20 servers.
    pub fn mean_per_user(&self) -> Vec<f64> {
        (0..self.used.len())
            .map(|u| {
                (0..self.servers)
                    .map(|s| f64::from(self.of(u, s)))
                    .sum::<f64>()
                    / self.servers as f64
            })
            .collect()
    }
}

/// The `q` quantile (0–1) of `values`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One user's month: when the laptop is awake, when the agent restarts, when each server is asked.
struct Life {
    /// Awake intervals, in order.
    awake: Vec<(u64, u64)>,
    /// Sign-ins (agent restarts): the first wake of each week.
    sign_ins: Vec<u64>,
    /// Request times per server, in order.
    requests: Vec<Vec<u64>>,
    used: Vec<usize>,
}

fn plan_life(cfg: &MonthConfig, rng: &mut StdRng) -> Life {
    // 1 to 5 servers; server i is picked with weight 1 / (i + 1).
    let k = rng.gen_range(1..=5usize);
    let mut used: Vec<usize> = Vec::new();
    let weights: Vec<f64> = (0..cfg.servers).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    while used.len() < k.min(cfg.servers) {
        let total: f64 = weights
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(_, w)| w)
            .sum();
        let mut pick = rng.gen::<f64>() * total;
        for (i, w) in weights.iter().enumerate() {
            if used.contains(&i) {
                continue;
            }
            if pick < *w {
                used.push(i);
                break;
            }
            pick -= w;
        }
    }
    let mut awake = Vec::new();
    let mut sign_ins = Vec::new();
    let mut requests = vec![Vec::new(); cfg.servers];
    for day in 0..cfg.days {
        // Day 0 is a Monday.
        if day % 7 >= 5 {
            continue;
        }
        let base = day * DAY;
        let wake = base + 8 * HOUR + 30 * MIN + rng.gen_range(0..HOUR);
        let sleep = base + 17 * HOUR + rng.gen_range(0..2 * HOUR);
        awake.push((wake, sleep));
        if day % 7 == 0 {
            sign_ins.push(wake);
        }
        if rng.gen::<f64>() < 0.15 {
            continue; // no AI client today
        }
        for &s in &used {
            if rng.gen::<f64>() >= 0.6 {
                continue;
            }
            for _ in 0..rng.gen_range(1..=4) {
                let start = rng.gen_range(wake..sleep);
                let end = (start + rng.gen_range(5 * MIN..=90 * MIN)).min(sleep);
                let mut t = start;
                while t < end {
                    requests[s].push(t);
                    t += rng.gen_range(20..=5 * MIN);
                }
            }
        }
    }
    for list in &mut requests {
        list.sort_unstable();
        list.dedup();
    }
    Life {
        awake,
        sign_ins,
        requests,
        used,
    }
}

/// The first awake second at or after `t` (`None`: asleep for the rest of the month).
fn first_awake(awake: &[(u64, u64)], t: u64) -> Option<u64> {
    awake
        .iter()
        .find(|(_, sleep)| *sleep > t)
        .map(|(wake, _)| t.max(*wake))
}

/// One server of one agent over the month.
struct Played {
    id_jags: u32,
    requests: u64,
    waited: u64,
    refused: u64,
    /// When its first grant failed (in the outage).
    first_failure: Option<u64>,
}

struct ServerRun<'a> {
    cfg: &'a MonthConfig,
    idp: &'a mut Vec<u32>,
    day_start: u64,
    expires_at: u64,
    /// The refresh time of the current token (kept while idle, as the engine does).
    refresh_at: u64,
    due: Option<u64>,
    last_requested: Option<u64>,
    attempts: u32,
    failing_since: Option<u64>,
    failed_at: Option<u64>,
    /// From when a client's request may try a failing server again (the engine's `retry_at`).
    retry_at: u64,
    failing: bool,
    minted: Vec<u64>,
    /// Since when the whole agent has been failing (the engine keeps one such time per agent):
    /// found by a first pass over the agent's servers.
    agent_failing_since: Option<u64>,
    first_failure: Option<u64>,
    /// When the ID-JAG that began the refresh-token chain was minted.
    chain_started: Option<u64>,
}

impl ServerRun<'_> {
    fn count_idp(&mut self, t: u64) {
        if let Some(i) = t.checked_sub(self.day_start) {
            if let Some(slot) = self.idp.get_mut(i as usize) {
                *slot += 1;
            }
        }
    }

    /// A grant at `t`: an ID-JAG (and its jwt-bearer grant), or a failure in the outage.
    fn grant(&mut self, t: u64, rng: &mut StdRng) -> bool {
        if self.cfg.in_outage(t) {
            self.attempts += 1;
            self.first_failure.get_or_insert(t);
            let own = *self.failing_since.get_or_insert(t);
            let since = self.agent_failing_since.map_or(own, |s| s.min(own));
            self.failed_at = Some(t);
            self.failing = true;
            let (draw, spread) = (rng.gen(), rng.gen());
            let served_until = self
                .expires_at
                .saturating_sub(lanyard_schedule::CLIENT_MIN_TTL_SECS);
            let standing = if self.minted.is_empty() && self.expires_at == 0 {
                Standing::FirstGrant
            } else if served_until > t {
                Standing::Serving {
                    until: served_until,
                }
            } else {
                Standing::Lapsed
            };
            let next =
                self.cfg
                    .retry
                    .after_failure(t, self.attempts, since, standing, draw, spread);
            self.retry_at = next.retry_at;
            self.due = Some(next.due_at);
            return false;
        }
        let by_refresh_token = self
            .chain_started
            .is_some_and(|c| may_use_refresh_token(c, t));
        if !by_refresh_token {
            self.count_idp(t);
            self.minted.push(t);
            if self.cfg.use_refresh_token {
                self.chain_started = Some(t);
            }
        }
        self.attempts = 0;
        self.failing_since = None;
        self.failing = false;
        self.expires_at = t + self.cfg.access_token_secs;
        self.refresh_at = self.cfg.renewal_at(t, self.expires_at, rng.gen());
        self.due = Some(self.refresh_at);
        true
    }

    fn minted_in_window(&self, t: u64) -> u64 {
        let from = t.saturating_sub(lanyard_schedule::USAGE_WINDOW_SECS);
        self.minted.iter().filter(|&&m| m > from).count() as u64
    }

    /// Fires every due refresh or retry up to `until` (exclusive), each at its first awake second.
    fn catch_up(&mut self, until: u64, awake: &[(u64, u64)], rng: &mut StdRng) {
        while let Some(due) = self.due {
            let Some(at) = first_awake(awake, due) else {
                self.due = None;
                return;
            };
            if at >= until {
                return;
            }
            // A refresh, or the retry of a failed refresh (the server had a token), goes only for
            // a server in use and within its budget; a first grant that failed is retried.
            let refreshing = !self.failing || !self.minted.is_empty();
            if refreshing
                && (!in_use(self.last_requested, at, self.cfg.idle_after_secs)
                    || near_budget(self.minted_in_window(at), self.cfg.budget))
            {
                self.due = None; // ready on first use
                return;
            }
            self.grant(at, rng);
        }
    }
}

/// Plays the month.
pub fn simulate_month(cfg: &MonthConfig) -> MonthReport {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut id_jags = vec![0u32; cfg.users * cfg.servers];
    let mut per_as = vec![0u64; cfg.as_count];
    let mut used_all = Vec::with_capacity(cfg.users);
    let (mut requests, mut waited, mut refused) = (0u64, 0u64, 0u64);
    let outage_day = cfg.outage.map(|o| o.0).unwrap_or(1);
    let day_start = outage_day * DAY;
    let mut idp_day = vec![0u32; DAY as usize];
    for u in 0..cfg.users {
        let life = plan_life(cfg, &mut rng);
        // The session: sign-ins (2 IdP requests) and one renewal per ID-token refresh while awake.
        for &t in &life.sign_ins {
            if let Some(i) = t.checked_sub(day_start).filter(|i| *i < DAY) {
                idp_day[i as usize] += 2;
            }
        }
        for &(wake, sleep) in &life.awake {
            if wake < day_start || wake >= day_start + DAY {
                continue;
            }
            let mut t = wake;
            loop {
                t = cfg
                    .refresh
                    .refresh_at(t, t + cfg.id_token_secs, rng.gen())
                    .max(t + 1);
                if t >= sleep {
                    break;
                }
                idp_day[(t - day_start) as usize] += 1;
            }
        }
        // The engine's outage clock is the agent's, not each server's: a first pass finds when
        // the agent's first grant failed, the second plays the servers with it (the same draws,
        // so the same failures).
        let replay = rng.clone();
        let mut scratch = vec![0u32; DAY as usize];
        let agent_failing_since = (0..cfg.servers)
            .filter_map(|s| {
                play_server(cfg, &life, s, &mut scratch, day_start, &mut rng, None).first_failure
            })
            .min();
        rng = replay;
        for s in 0..cfg.servers {
            let played = play_server(
                cfg,
                &life,
                s,
                &mut idp_day,
                day_start,
                &mut rng,
                agent_failing_since,
            );
            id_jags[u * cfg.servers + s] = played.id_jags;
            per_as[cfg.server_as[s]] += u64::from(played.id_jags);
            requests += played.requests;
            waited += played.waited;
            refused += played.refused;
        }
        used_all.push(life.used);
    }
    MonthReport {
        id_jags,
        used: used_all,
        per_as,
        requests,
        waited,
        refused,
        idp_day,
        servers: cfg.servers,
    }
}

fn play_server(
    cfg: &MonthConfig,
    life: &Life,
    s: usize,
    idp: &mut Vec<u32>,
    day_start: u64,
    rng: &mut StdRng,
    agent_failing_since: Option<u64>,
) -> Played {
    let mut run = ServerRun {
        cfg,
        idp,
        day_start,
        expires_at: 0,
        refresh_at: 0,
        due: None,
        last_requested: None,
        attempts: 0,
        failing_since: None,
        failed_at: None,
        retry_at: 0,
        failing: false,
        minted: Vec::new(),
        agent_failing_since,
        first_failure: None,
        chain_started: None,
    };
    let (mut requests, mut waited, mut refused) = (0u64, 0u64, 0u64);
    // Sign-ins and requests in time order (a sign-in first when both fall in one second).
    let mut events: Vec<(u64, bool)> = life.sign_ins.iter().map(|&t| (t, true)).collect();
    events.extend(life.requests[s].iter().map(|&t| (t, false)));
    events.sort_unstable_by_key(|&(t, sign_in)| (t, !sign_in));
    for (t, sign_in) in events {
        run.catch_up(t, &life.awake, rng);
        if sign_in {
            // An agent restart: the tokens in memory are gone, the sign-in grants every server.
            run.attempts = 0;
            run.failing = false;
            run.chain_started = None;
            run.grant(t, rng);
            continue;
        }
        run.last_requested = Some(t);
        let usable = run.expires_at > t + cfg.min_ttl;
        if usable {
            requests += 1;
            if run.due.is_none()
                && !run.failing
                && !near_budget(run.minted_in_window(t), cfg.budget)
            {
                // In use again: its refresh, already due, goes now in the background.
                run.due = Some(run.refresh_at.max(t));
                run.catch_up(t + 1, &life.awake, rng);
            }
            continue;
        }
        if run.failing
            && run.retry_at > t
            && !run
                .failed_at
                .is_some_and(|at| cfg.retry.client_may_retry(t, at))
        {
            refused += 1; // refused: retrying
            continue;
        }
        if run.grant(t, rng) {
            requests += 1;
            waited += 1;
        } else {
            refused += 1;
        }
    }
    run.catch_up(cfg.days * DAY, &life.awake, rng);
    Played {
        id_jags: run.minted.len() as u32,
        requests,
        waited,
        refused,
        first_failure: run.first_failure,
    }
}
