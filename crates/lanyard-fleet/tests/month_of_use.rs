//! The month of people at a small scale (200 users), so that `make unit` catches a regression of
//! use-driven refresh without `make bench-fleet`: keeping every server warm costs about 15
//! ID-JAGs per server per workday, following use costs a fraction of it, and a budget lowers what
//! the busiest users' servers spend.

use lanyard_fleet::month::{quantile, simulate_month, MonthConfig, MonthReport};

const USERS: usize = 200;

fn run(idle_after_secs: u64, budget: Option<u64>) -> MonthReport {
    let mut cfg = MonthConfig::standard(USERS);
    cfg.idle_after_secs = idle_after_secs;
    cfg.budget = budget;
    simulate_month(&cfg)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn busiest(r: &MonthReport) -> Vec<f64> {
    r.busiest_server_per_user()
        .iter()
        .map(|&b| f64::from(b))
        .collect()
}

#[test]
fn following_use_spends_a_fraction_of_always_warm() {
    let warm = run(0, None);
    let used = run(lanyard_schedule::defaults::IDLE_AFTER_SECS, None);
    let warm_mean = mean(&warm.mean_per_user());
    let used_mean = mean(&used.mean_per_user());
    // 22 workdays, about 15 refreshes a day each: the 330.
    assert!(
        (300.0..380.0).contains(&warm_mean),
        "always warm: {warm_mean:.1}"
    );
    assert!(
        used_mean < warm_mean / 10.0,
        "use-driven {used_mean:.1} vs always warm {warm_mean:.1}"
    );
    assert!(
        quantile(&busiest(&used), 0.95) < quantile(&busiest(&warm), 0.95) / 3.0,
        "the busiest users' servers"
    );
    // Idle servers cost the first request of a burst one wait, rarely more.
    assert!(
        used.waited * 10 < used.requests,
        "{} of {}",
        used.waited,
        used.requests
    );
    // Always warm, only a request meeting the outage's failed refresh waits.
    assert!(
        warm.waited * 1000 < warm.requests,
        "always warm: {}",
        warm.waited
    );
}

#[test]
fn a_budget_lowers_what_the_busiest_servers_spend() {
    let idle = lanyard_schedule::defaults::IDLE_AFTER_SECS;
    let free = quantile(&busiest(&run(idle, None)), 0.95);
    let capped = quantile(&busiest(&run(idle, Some(40))), 0.95);
    assert!(capped < free, "budget 40: p95 {capped} vs {free} without");
}

#[test]
fn renewing_servers_in_use_late_spends_fewer_id_jags_on_the_busiest_servers() {
    let late = MonthConfig::standard(USERS);
    let lifetime = MonthConfig {
        late_renewal: false,
        ..late.clone()
    };
    let late = simulate_month(&late);
    let lifetime = simulate_month(&lifetime);
    let (late_p95, lifetime_p95) = (
        quantile(&busiest(&late), 0.95),
        quantile(&busiest(&lifetime), 0.95),
    );
    // About one ID-JAG per 57 minutes of use instead of one per 36.
    assert!(
        late_p95 < lifetime_p95 * 0.85,
        "p95 busiest server: late {late_p95} vs at 45-75 % {lifetime_p95}"
    );
    assert!(
        mean(&late.mean_per_user()) < mean(&lifetime.mean_per_user()),
        "mean per server"
    );
}
