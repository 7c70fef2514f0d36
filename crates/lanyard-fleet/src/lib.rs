//! A fleet of Lanyard agents on a virtual clock: what 10,000 laptops do to the IdP and to each
//! authorization server at 9:00, all day, and when the network comes back after an outage.
//!
//! Discrete events in one-second buckets. Every *when* and *may it start* decision is made by the
//! engine's own functions from `lanyard-schedule` ([`RefreshRule::refresh_at`],
//! [`RefreshRule::still_fresh`], [`RetryRule::retry_at`], [`HostLoad::may_start`],
//! [`on_demand`]) with draws from a seeded generator instead of the engine's real randomness; this
//! module only plays the engine's sequence of events (sign-in → grants; a grant that finds the ID
//! token stale renews the session first, once per agent and second; a failure of either puts
//! the grant on its own retry time, spread by how long this agent has been failing) and counts the requests that reach each host. It owns no
//! scheduling arithmetic of its own and does no I/O; the binary prints and plots its [`Report`].

pub mod month;

use lanyard_schedule::{on_demand, Backoff, HostLoad, RefreshRule, RetryRule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One simulated day.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub agents: usize,
    /// The authorization server of each MCP server (index into `as_names`).
    pub server_as: Vec<usize>,
    pub as_names: Vec<String>,
    /// Servers minted only when first asked (the sim has no clients asking, so these are never
    /// minted: the load a fleet saves by on-demand mode).
    pub on_demand_servers: Vec<String>,
    pub refresh: RefreshRule,
    pub retry: RetryRule,
    pub max_concurrency_per_host: usize,
    /// Seconds; the day starts at 09:00 (t = 0) unless `clock_origin` says otherwise.
    pub duration: u64,
    /// Wall-clock second of day of t = 0 (for labels only).
    pub clock_origin: u64,
    /// Sign-ins arrive uniformly over `[0, sign_in_window)`.
    pub sign_in_window: u64,
    /// Every request fails during `[outage.0, outage.1)`.
    pub outage: (u64, u64),
    pub access_token_secs: u64,
    pub id_token_secs: u64,
    /// One grant's round trips (exchange + jwt-bearer), in milliseconds: a host slot is held this
    /// long, so an agent starts at most `cap × 1000 / grant_ms` scheduled grants per host a second.
    pub grant_ms: u64,
    pub seed: u64,
}

impl FleetConfig {
    /// The day: `agents` laptops × 20 servers on 7 authorization servers, 1 h access and ID
    /// tokens, sign-ins 09:00–09:30, an outage 13:00–13:20, 24 h; the policy's default settings.
    pub fn standard(agents: usize) -> Self {
        // 20 servers on 7 ASes: an internal gateway AS fronting 8 in-house servers, a vendor suite
        // of 4, one of 3, one of 2, three SaaS servers with their own AS.
        let server_as = [
            vec![0; 8],
            vec![1; 4],
            vec![2; 3],
            vec![3; 2],
            vec![4],
            vec![5],
            vec![6],
        ]
        .concat();
        let as_names = [
            "as-gateway (8 servers)",
            "as-suite (4)",
            "as-tools (3)",
            "as-data (2)",
            "as-saas-1 (1)",
            "as-saas-2 (1)",
            "as-saas-3 (1)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        FleetConfig {
            agents,
            server_as,
            as_names,
            on_demand_servers: Vec::new(),
            refresh: RefreshRule::default(),
            retry: RetryRule {
                backoff: Backoff::default(),
                recovery_jitter_secs: lanyard_schedule::defaults::RECOVERY_JITTER_SECS,
            },
            max_concurrency_per_host: lanyard_schedule::defaults::MAX_CONCURRENCY_PER_HOST,
            duration: 24 * 3600,
            clock_origin: 9 * 3600,
            sign_in_window: 30 * 60,
            outage: (4 * 3600, 4 * 3600 + 20 * 60),
            access_token_secs: 3600,
            id_token_secs: 3600,
            grant_ms: 250,
            seed: 9,
        }
    }

    pub fn servers(&self) -> usize {
        self.server_as.len()
    }

    fn in_outage(&self, t: u64) -> bool {
        (self.outage.0..self.outage.1).contains(&t)
    }
}

/// Requests that reached each host, per second of the day.
#[derive(Debug, Clone)]
pub struct Load {
    pub idp: Vec<u32>,
    /// Per authorization server.
    pub per_as: Vec<Vec<u32>>,
    /// Requests that failed because of the outage (never reached a host).
    pub failed_attempts: u64,
}

const NONE: u64 = u64::MAX;
const KIND_IDP: u8 = 254;
const KIND_SIGN_IN: u8 = 255;

#[derive(Clone)]
struct Server {
    due: u64,
    attempts: u32,
}

#[derive(Clone)]
struct Agent {
    signed_in: bool,
    id_expires_at: u64,
    idp_due: u64,
    idp_refresh_due: u64,
    idp_attempts: u32,
    idp_retry_at: u64,
    /// Since when this agent's requests have been failing with no success in between.
    failing_since: Option<u64>,
    servers: Vec<Server>,
}

struct Sim<'a> {
    cfg: &'a FleetConfig,
    rng: StdRng,
    agents: Vec<Agent>,
    buckets: Vec<Vec<(u32, u8)>>,
    load: Load,
    hosts: Vec<[String; 2]>,
}

impl Sim<'_> {
    fn push(&mut self, t: u64, agent: u32, kind: u8) {
        if let Some(bucket) = self.buckets.get_mut(t as usize) {
            bucket.push((agent, kind));
        }
    }

    fn draw(&mut self) -> f64 {
        self.rng.gen::<f64>()
    }

    fn idp_hit(&mut self, t: u64, n: u32) {
        self.load.idp[t as usize] += n;
    }

    fn as_hit(&mut self, t: u64, server: usize) {
        let k = self.cfg.server_as[server];
        self.load.per_as[k][t as usize] += 1;
    }

    /// The engine's session renewal: one refresh request; a failure sets the retry time.
    fn renew_session(&mut self, t: u64, a: usize) -> bool {
        if self.cfg.in_outage(t) {
            self.load.failed_attempts += 1;
            let draw = self.draw();
            let agent = &mut self.agents[a];
            agent.idp_attempts += 1;
            let since = *agent.failing_since.get_or_insert(t);
            agent.idp_retry_at = self.cfg.retry.retry_at(t, agent.idp_attempts, since, draw);
            agent.idp_due = agent.idp_refresh_due.max(agent.idp_retry_at);
            let due = agent.idp_due;
            self.push(due, a as u32, KIND_IDP);
            return false;
        }
        self.idp_hit(t, 1);
        let draw = self.draw();
        let expires = t + self.cfg.id_token_secs;
        let agent = &mut self.agents[a];
        agent.id_expires_at = expires;
        agent.idp_refresh_due = self.cfg.refresh.refresh_at(t, expires, draw);
        agent.idp_attempts = 0;
        agent.failing_since = None;
        agent.idp_retry_at = 0;
        agent.idp_due = agent.idp_refresh_due;
        let due = agent.idp_due;
        self.push(due, a as u32, KIND_IDP);
        true
    }

    /// One grant (exchange at the IdP, jwt-bearer at the server's AS), as the engine runs it.
    /// `renewed` remembers this second's session renewal (single-flight).
    fn grant(&mut self, t: u64, a: usize, s: usize, renewed: &mut Option<bool>) {
        let fresh = self
            .cfg
            .refresh
            .still_fresh(t, self.agents[a].id_expires_at);
        if !fresh {
            let ok = match *renewed {
                Some(ok) => ok,
                None => {
                    let ok = self.renew_session(t, a);
                    *renewed = Some(ok);
                    ok
                }
            };
            if !ok {
                // A grant that waited for the session goes again on its own retry time.
                self.fail(t, a, s);
                return;
            }
        }
        if self.cfg.in_outage(t) {
            self.load.failed_attempts += 1;
            self.fail(t, a, s);
            return;
        }
        self.idp_hit(t, 1);
        self.as_hit(t, s);
        let draw = self.draw();
        let expires = t + self.cfg.access_token_secs;
        let due = self.cfg.refresh.refresh_at(t, expires, draw);
        let agent = &mut self.agents[a];
        agent.failing_since = None;
        let server = &mut agent.servers[s];
        server.attempts = 0;
        server.due = due;
        self.push(due, a as u32, s as u8);
    }

    /// Server `s`'s grant failed at `t`: its next attempt, by the engine's retry rule.
    fn fail(&mut self, t: u64, a: usize, s: usize) {
        let draw = self.draw();
        let agent = &mut self.agents[a];
        let since = *agent.failing_since.get_or_insert(t);
        let server = &mut agent.servers[s];
        server.attempts += 1;
        server.due = self.cfg.retry.retry_at(t, server.attempts, since, draw);
        let due = server.due;
        self.push(due, a as u32, s as u8);
    }

    /// Everything agent `a` has due at second `t`: `kinds` are its bucket entries.
    fn run_agent(&mut self, t: u64, a: usize, kinds: &[u8]) {
        let cfg = self.cfg;
        // (server, held to the per-host cap)
        let mut grants: Vec<(usize, bool)> = Vec::new();
        let mut renewed: Option<bool> = None;
        for &kind in kinds {
            match kind {
                KIND_SIGN_IN => {
                    // Authorization request + code redemption at the IdP; the user waits for the
                    // grants that follow, so they are not held back per host.
                    self.idp_hit(t, 2);
                    let draw = self.draw();
                    let expires = t + cfg.id_token_secs;
                    let agent = &mut self.agents[a];
                    agent.signed_in = true;
                    agent.id_expires_at = expires;
                    agent.idp_refresh_due = cfg.refresh.refresh_at(t, expires, draw);
                    agent.idp_due = agent.idp_refresh_due;
                    let due = agent.idp_due;
                    self.push(due, a as u32, KIND_IDP);
                    for s in 0..cfg.servers() {
                        if !on_demand(&cfg.on_demand_servers, &format!("s{s}")) {
                            // First grant: the AS's metadata, then the grant.
                            self.as_hit(t, s);
                            grants.push((s, false));
                        }
                    }
                }
                KIND_IDP => {
                    let agent = &self.agents[a];
                    if agent.signed_in
                        && agent.idp_due == t
                        && renewed.is_none()
                        && t >= agent.idp_refresh_due
                        && t >= agent.idp_retry_at
                    {
                        renewed = Some(self.renew_session(t, a));
                    }
                }
                s => {
                    let s = s as usize;
                    if self.agents[a].servers[s].due == t && !grants.iter().any(|g| g.0 == s) {
                        grants.push((s, true));
                    }
                }
            }
        }
        // Scheduled grants are admitted per host by the engine's HostLoad; each holds its slot for
        // one grant's duration, so a second has `1000 / grant_ms` rounds.
        let rounds = (1000 / cfg.grant_ms.max(1)).max(1);
        for _ in 0..rounds {
            if grants.is_empty() {
                break;
            }
            let mut load = HostLoad::default();
            let mut waiting = Vec::new();
            for (s, held) in grants.drain(..) {
                let hosts = &self.hosts[s];
                if held && !load.may_start(hosts, cfg.max_concurrency_per_host) {
                    waiting.push((s, held));
                    continue;
                }
                let hosts = hosts.clone();
                load.start(&hosts);
                self.grant(t, a, s, &mut renewed);
            }
            grants = waiting;
        }
        for (s, _) in grants {
            // Still held back at the end of the second: next second.
            self.agents[a].servers[s].due = t + 1;
            self.push(t + 1, a as u32, s as u8);
        }
    }
}

/// Runs the day.
pub fn simulate(cfg: &FleetConfig) -> Load {
    let n = cfg.servers();
    assert!(n < KIND_IDP as usize, "at most 253 servers");
    let agent = Agent {
        signed_in: false,
        id_expires_at: 0,
        idp_due: NONE,
        idp_refresh_due: NONE,
        idp_attempts: 0,
        idp_retry_at: 0,
        failing_since: None,
        servers: vec![
            Server {
                due: NONE,
                attempts: 0,
            };
            n
        ],
    };
    let len = cfg.duration as usize;
    let hosts = cfg
        .server_as
        .iter()
        .map(|&k| ["idp".to_string(), cfg.as_names[k].clone()])
        .collect();
    let mut sim = Sim {
        cfg,
        rng: StdRng::seed_from_u64(cfg.seed),
        agents: vec![agent; cfg.agents],
        buckets: vec![Vec::new(); len + 1],
        load: Load {
            idp: vec![0; len + 1],
            per_as: vec![vec![0; len + 1]; cfg.as_names.len()],
            failed_attempts: 0,
        },
        hosts,
    };
    for a in 0..cfg.agents {
        let at = sim.rng.gen_range(0..cfg.sign_in_window.max(1));
        sim.push(at, a as u32, KIND_SIGN_IN);
    }
    for t in 0..cfg.duration {
        let mut bucket = std::mem::take(&mut sim.buckets[t as usize]);
        // Sign-in first, then the session, then the servers (the engine's order within a tick).
        bucket.sort_unstable_by_key(|&(a, k)| (a, std::cmp::Reverse(k)));
        let mut i = 0;
        while i < bucket.len() {
            let a = bucket[i].0;
            let mut j = i;
            while j < bucket.len() && bucket[j].0 == a {
                j += 1;
            }
            let kinds: Vec<u8> = bucket[i..j].iter().map(|e| e.1).collect();
            sim.run_agent(t, a as usize, &kinds);
            i = j;
        }
    }
    let mut load = sim.load;
    load.idp.truncate(len);
    for series in &mut load.per_as {
        series.truncate(len);
    }
    load
}

/// Peak, mean and 99th percentile of requests per second over some seconds (per bucket, divided
/// by the bucket's length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub peak: f64,
    pub mean: f64,
    pub p99: f64,
}

/// The rates of `series` over the seconds in `ranges`, counted in buckets of `bucket` seconds
/// (1 for requests per second; the scaled-down test uses wider buckets) and given per second.
pub fn rates(series: &[u32], ranges: &[(u64, u64)], bucket: u64) -> Rates {
    let bucket = bucket.max(1);
    let mut counts: Vec<u64> = Vec::new();
    for &(from, to) in ranges {
        let to = to.min(series.len() as u64);
        let mut t = from;
        while t + bucket <= to {
            counts.push(
                series[t as usize..(t + bucket) as usize]
                    .iter()
                    .map(|&c| u64::from(c))
                    .sum(),
            );
            t += bucket;
        }
    }
    if counts.is_empty() {
        return Rates {
            peak: 0.0,
            mean: 0.0,
            p99: 0.0,
        };
    }
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64 / bucket as f64;
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let p99 = sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize];
    let peak = sorted[sorted.len() - 1];
    Rates {
        peak: peak as f64 / bucket as f64,
        mean,
        p99: p99 as f64 / bucket as f64,
    }
}

/// The phases of the day the report is about.
#[derive(Debug, Clone)]
pub struct Phases {
    pub sign_in_wave: Vec<(u64, u64)>,
    /// Away from the wave and the outage (two hours after each): what the targets compare with.
    pub steady: Vec<(u64, u64)>,
    /// The outage itself (nothing reaches a host).
    pub outage: Vec<(u64, u64)>,
    /// The hour after the network came back.
    pub recovery: Vec<(u64, u64)>,
    /// From the end of the outage to the end of the day (the IdP target's span).
    pub after_outage: Vec<(u64, u64)>,
}

impl Phases {
    pub fn of(cfg: &FleetConfig) -> Self {
        let (start, end) = cfg.outage;
        let settle = 2 * 3600;
        Phases {
            sign_in_wave: vec![(0, cfg.sign_in_window)],
            steady: vec![
                (cfg.sign_in_window + settle, start),
                ((end + settle).min(cfg.duration), cfg.duration),
            ],
            outage: vec![(start, end)],
            recovery: vec![(end, (end + 3600).min(cfg.duration))],
            after_outage: vec![(end, cfg.duration)],
        }
    }
}

/// One host's rates per phase.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub name: String,
    pub sign_in_wave: Rates,
    pub steady: Rates,
    pub recovery: Rates,
    pub after_outage: Rates,
}

/// A target: what it says, the measured figure and the verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The day's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub idp: HostReport,
    /// The authorization server with the most requests over the day.
    pub busiest_as: HostReport,
    pub busiest_as_index: usize,
    pub verdicts: Vec<Verdict>,
    pub failed_attempts: u64,
}

/// The report of `load`, in buckets of `bucket` seconds (1 for the real bench).
pub fn report(cfg: &FleetConfig, load: &Load, bucket: u64) -> Report {
    let phases = Phases::of(cfg);
    let host = |name: &str, series: &[u32]| HostReport {
        name: name.to_owned(),
        sign_in_wave: rates(series, &phases.sign_in_wave, bucket),
        steady: rates(series, &phases.steady, bucket),
        recovery: rates(series, &phases.recovery, bucket),
        after_outage: rates(series, &phases.after_outage, bucket),
    };
    let busiest_as_index = (0..load.per_as.len())
        .max_by_key(|&k| load.per_as[k].iter().map(|&c| u64::from(c)).sum::<u64>())
        .unwrap_or(0);
    let idp = host("IdP", &load.idp);
    let busiest_as = host(
        cfg.as_names
            .get(busiest_as_index)
            .map(String::as_str)
            .unwrap_or("AS"),
        load.per_as.get(busiest_as_index).map_or(&[][..], |v| v),
    );
    let mut verdicts = Vec::new();
    for h in [&idp, &busiest_as] {
        let ratio = h.steady.peak / h.steady.mean.max(f64::MIN_POSITIVE);
        verdicts.push(Verdict {
            target: format!("{}: steady-state peak ≤ 2 × steady mean", h.name),
            measured: format!(
                "peak {:.0} vs mean {:.1} = {:.2} ×",
                h.steady.peak, h.steady.mean, ratio
            ),
            met: ratio <= 2.0,
        });
    }
    let ratio = idp.after_outage.peak / idp.steady.mean.max(f64::MIN_POSITIVE);
    verdicts.push(Verdict {
        target: "IdP: after the outage, no second above 3 × the steady mean".into(),
        measured: format!(
            "worst second {:.0} vs steady mean {:.1} = {:.2} ×",
            idp.after_outage.peak, idp.steady.mean, ratio
        ),
        met: ratio <= 3.0,
    });
    Report {
        idp,
        busiest_as,
        busiest_as_index,
        verdicts,
        failed_attempts: load.failed_attempts,
    }
}

/// `HH:MM` of second `t` of the simulated day.
pub fn clock(cfg: &FleetConfig, t: u64) -> String {
    let s = (cfg.clock_origin + t) % 86_400;
    format!("{:02}:{:02}", s / 3600, (s / 60) % 60)
}
