//! The fleet bench's targets at a small scale (200 agents, counted per minute instead of per
//! second, since 200 agents' seconds are mostly empty), so that a scheduler regression fails
//! `make unit` in a second instead of waiting for `make bench-fleet`: with the policy defaults both
//! targets hold, and without the jitters they do not.

use lanyard_fleet::{report, simulate, FleetConfig, Report};

const AGENTS: usize = 200;
const MINUTE: u64 = 60;

fn run(tweak: impl FnOnce(&mut FleetConfig)) -> Report {
    let mut cfg = FleetConfig::standard(AGENTS);
    tweak(&mut cfg);
    let load = simulate(&cfg);
    report(&cfg, &load, MINUTE)
}

fn ratios(r: &Report) -> (f64, f64, f64) {
    (
        r.idp.steady.peak / r.idp.steady.mean,
        r.busiest_as.steady.peak / r.busiest_as.steady.mean,
        r.idp.after_outage.peak / r.idp.steady.mean,
    )
}

#[test]
fn the_default_settings_meet_both_targets() {
    for seed in [1, 2, 3] {
        let r = run(|c| c.seed = seed);
        let (idp, busiest_as, after_outage) = ratios(&r);
        eprintln!(
            "seed {seed}: steady peak/mean IdP {idp:.2}, busiest AS {busiest_as:.2}; \
             IdP after the outage {after_outage:.2} × the steady mean"
        );
        assert!(r.idp.steady.mean > 1.0, "the day has load: {:?}", r.idp);
        assert!(idp <= 2.0, "seed {seed}: IdP steady peak/mean {idp:.2}");
        assert!(
            busiest_as <= 2.0,
            "seed {seed}: busiest AS steady peak/mean {busiest_as:.2}"
        );
        assert!(
            after_outage <= 3.0,
            "seed {seed}: IdP after the outage {after_outage:.2} × the steady mean"
        );
    }
}

#[test]
fn without_the_jitters_the_outage_comes_back_at_once() {
    let r = run(|c| {
        c.refresh.jitter = 0.0;
        c.retry.recovery_jitter_secs = 0;
    });
    let (_, _, after_outage) = ratios(&r);
    eprintln!("no jitters: IdP after the outage {after_outage:.2} × the steady mean");
    assert!(
        after_outage > 3.0,
        "plain backoff should overload the IdP after the outage: {after_outage:.2}"
    );
}

#[test]
fn the_simulation_is_deterministic_per_seed() {
    let cfg = FleetConfig::standard(50);
    assert_eq!(simulate(&cfg).idp, simulate(&cfg).idp);
}
