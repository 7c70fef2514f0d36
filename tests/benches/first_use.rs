//! The wait a client sees on its first request to an idle server ("ready on first use"), with
//! 50 ms of latency injected on every testbed request (one RTT = 50 ms); target: p99 ≤ 3 RTT.
//!
//!     cargo bench -p lanyard-tests --bench first_use            (make bench runs it)
//!     … -- --runs 50
//!
//! The testbed runs in this process with a jumpable clock shared with the engine; one server,
//! `settings.idle_after_secs` 60. Each run the laptop sleeps an hour and wakes (both clocks jump
//! ahead and the engine hears a resume, as from logind): the server's token has expired, the server
//! is idle and the ID token has lapsed too. Two cases, alternating:
//!
//! * *after waking*: on the resume notice the engine renews the IdP session by itself; the client's
//!   first request comes after that (a person opens the lid, unlocks, types; the renewal takes one
//!   round trip): the grant is a token exchange and a jwt-bearer grant, 2 RTT;
//! * *at the very instant of waking*: the request arrives with the resume notice itself, before the
//!   session's renewal can have answered: renewal, exchange, jwt-bearer in a row, 3 RTT. The
//!   exchange needs a live ID token as its subject, so this is the floor for such a request.
//!
//! The extra latency is the request's time minus the median of a request answered from a warm
//! token (measured in the same process; well under a millisecond).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use lanyard_core::engine::{IdpStatus, ServerState};
use lanyard_testbed::demo::demo_config;
use serde_json::json;
use support::*;

const RTT: Duration = Duration::from_millis(50);

fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(100usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let tb = testbed(demo_config(RTT)).await;
        let mut policy = policy_json(&tb);
        policy["servers"]
            .as_array_mut()
            .expect("servers")
            .retain(|s| s["id"] == "docs");
        policy["settings"] = json!({"idle_after_secs": 60});
        let lanyard = start_engine(&tb, &policy, Options::default());
        lanyard.sign_in().await;
        lanyard.wait_granted("docs").await;
        // A warm token: the floor every request pays.
        let mut cached = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            lanyard.token("docs", 60).await;
            cached.push(start.elapsed());
        }
        let floor = quantile(cached, 0.5);
        let (mut warm, mut woke) = (Vec::new(), Vec::new());
        for run in 0..runs * 2 {
            lanyard.sleep_and_wake(&tb, Duration::from_secs(3600));
            let just_woke = run % 2 == 1;
            if !just_woke {
                let now = lanyard.now();
                lanyard
                    .wait("the session renewed on waking and docs idle", |s| {
                        matches!(s.idp, IdpStatus::SignedIn { id_token_expires_at, .. } if id_token_expires_at > now + 600)
                            && matches!(s.server("docs").map(|d| &d.state), Some(ServerState::ReadyOnFirstUse { .. }))
                    })
                    .await;
            }
            let start = Instant::now();
            lanyard.token("docs", 60).await;
            let took = start.elapsed().saturating_sub(floor);
            if just_woke {
                woke.push(took);
            } else {
                warm.push(took);
            }
            let_ticks_pass(2).await;
        }
        println!(
            "first request to an idle server, {runs} runs each, RTT {} ms, warm-token floor {:.2} ms:",
            RTT.as_millis(),
            floor.as_secs_f64() * 1000.0
        );
        println!("| case | p50 extra | p99 extra | p99 in RTT | target ≤ 3 RTT |");
        println!("|---|---:|---:|---:|:---:|");
        for (case, v) in [
            ("after waking (the session renewed on the resume notice)", warm),
            ("at the very instant of waking (renewal, exchange, jwt-bearer)", woke),
        ] {
            let p50 = quantile(v.clone(), 0.5);
            let p99 = quantile(v, 0.99);
            let rtts = p99.as_secs_f64() / RTT.as_secs_f64();
            println!(
                "| {case} | {:.0} ms | {:.0} ms | {rtts:.2} | {} |",
                p50.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0,
                if rtts <= 3.0 { "met" } else { "NOT met" }
            );
        }
    });
}
