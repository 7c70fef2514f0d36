//! Sign-in → every server `Granted`, for N = 1, 10, 50, 200 MCP servers (each behind its own
//! authorization server), with 50 ms latency added to every testbed request (RTT = 50 ms).
//!
//!     cargo bench -p lanyard-tests --bench signin_to_granted        (make bench)
//!     … -- --runs 3 --n 1,10 --latency-ms 0                        (fewer runs, sizes; no latency)
//!
//! Per N and variant: one warm-up run (the testbed's authorization servers fetch the IdP's JWKS
//! once, on their first jwt-bearer request; that is testbed start-up, not engine work), then
//! `--runs` measured runs, each with a fresh engine and an empty in-memory store. Measured:
//!
//! * sign-in: `sign_in()` called → returned (IdP discovery, the scripted browser's login, code
//!   exchange);
//! * grants: `sign_in()` returned → every server `Granted` (the target is ≤ 3 RTT + 50 ms);
//! * total: both.
//!
//! Variants: `discovered` (the policy names only the MCP URL: 401 probe, protected resource
//! metadata, AS metadata, token exchange, jwt-bearer = 5 RTT), `policy AS` (the policy names the
//! authorization server and resource: AS metadata, exchange, jwt-bearer = 3 RTT) and `re-sign-in`
//! (the `discovered` policy, signed out and in again in the same engine, which keeps what it
//! discovered: exchange + jwt-bearer = 2 RTT; the IdP client is cached too).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lanyard_core::engine::{self, EngineHandle, IdpStatus, ServerState, Status};
use lanyard_core::store::MemoryStore;
use lanyard_testbed::demo::lanyard_policy;
use lanyard_testbed::{AsConfig, McpConfig, Testbed, TestbedConfig};
use serde_json::{json, Value};

const RTT: Duration = Duration::from_millis(50);
const TARGET_RTTS: u32 = 3;
const TARGET_SLACK: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Discovered,
    PolicyAs,
    ReSignIn,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Discovered => "discovered",
            Variant::PolicyAs => "policy AS",
            Variant::ReSignIn => "re-sign-in",
        }
    }
}

struct Sample {
    sign_in: Duration,
    grants: Duration,
    /// CPU time of the whole process (engine and testbed) during the grants phase.
    grants_cpu: Duration,
}

/// CPU time (user + system) this process has used so far: `/proc/self/stat`, in clock ticks of
/// 10 ms. Zero where there is no procfs.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

fn world(n: usize, latency: Duration) -> TestbedConfig {
    let mut config = TestbedConfig {
        auth_servers: Vec::new(),
        mcp_servers: Vec::new(),
        latency,
        ..TestbedConfig::default()
    };
    for i in 0..n {
        let name = format!("s{i}");
        let scope = format!("{name}.read");
        config
            .auth_servers
            .push(AsConfig::new(&name, &format!("lanyard-{name}")).with_scopes(&[scope.as_str()]));
        config
            .mcp_servers
            .push(McpConfig::new(&name, &name, &[scope.as_str()]));
    }
    config
}

fn policy(tb: &Testbed, variant: Variant) -> Value {
    let mut policy = lanyard_policy(tb);
    policy["settings"] = json!({"max_concurrency": 256});
    if variant == Variant::PolicyAs {
        for server in policy["servers"].as_array_mut().into_iter().flatten() {
            let name = server["id"].as_str().unwrap_or_default().to_owned();
            let (Some(mcp), Some(auth)) = (tb.mcp_server(&name), tb.auth_server_for(&name)) else {
                continue;
            };
            server["authorization_server"] = json!(auth.issuer());
            server["resource"] = json!(mcp.resource());
        }
    }
    policy
}

fn all_granted(status: &Status, n: usize) -> Result<bool, String> {
    let mut granted = 0;
    for server in &status.servers {
        match &server.state {
            ServerState::Granted { .. } => granted += 1,
            ServerState::Denied { code, .. } => {
                return Err(format!("{} denied: {code}", server.id))
            }
            ServerState::Failing { error, .. } => {
                return Err(format!("{} failing: {error}", server.id))
            }
            _ => {}
        }
    }
    Ok(granted == n)
}

/// Signs in and waits for every server; returns the two phases.
async fn sign_in_and_grant(engine: &EngineHandle, n: usize) -> Sample {
    let start = Instant::now();
    engine.sign_in().await.expect("sign-in");
    let signed_in = Instant::now();
    let cpu_before = process_cpu();
    let mut failure = None;
    let waited = tokio::time::timeout(
        Duration::from_secs(120),
        engine.wait_for(|s| match all_granted(s, n) {
            Ok(done) => done,
            Err(e) => {
                failure = Some(e);
                true
            }
        }),
    )
    .await;
    let done = Instant::now();
    let grants_cpu = process_cpu().saturating_sub(cpu_before);
    if let Some(e) = failure {
        panic!("a grant failed: {e}");
    }
    waited
        .expect("every server granted within 120 s")
        .expect("engine running");
    Sample {
        sign_in: signed_in - start,
        grants: done - signed_in,
        grants_cpu,
    }
}

async fn run_once(tb: &Testbed, policy: &Value, n: usize, variant: Variant) -> Sample {
    let browser = kit::ScriptedBrowser::new("alice");
    let mut config = kit::engine_config(policy, Arc::new(MemoryStore::new()), tb.clock(), browser);
    config.restore_session = false;
    let engine = engine::start(config).expect("engine");
    let mut sample = sign_in_and_grant(&engine, n).await;
    if variant == Variant::ReSignIn {
        engine.sign_out().await.expect("sign-out");
        engine
            .wait_for(|s| matches!(s.idp, IdpStatus::SignedOut))
            .await
            .expect("signed out");
        sample = sign_in_and_grant(&engine, n).await;
    }
    engine.shutdown().await;
    sample
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn rtts(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() / RTT.as_secs_f64())
}

struct Args {
    runs: usize,
    sizes: Vec<usize>,
    /// Latency per request; 0 shows the processing floor (CPU of engine + testbed).
    latency: Duration,
}

fn args() -> Args {
    let mut args = Args {
        runs: 5,
        sizes: vec![1, 10, 50, 200],
        latency: RTT,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                args.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--runs <count>")
            }
            "--n" => {
                args.sizes = it
                    .next()
                    .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                    .expect("--n <n,n,…>")
            }
            "--latency-ms" => {
                args.latency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .map(Duration::from_millis)
                    .expect("--latency-ms <ms>")
            }
            _ => {} // `cargo bench` passes `--bench`
        }
    }
    args.runs = args.runs.max(1);
    args
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let target = RTT * TARGET_RTTS + TARGET_SLACK;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sign-in → all N granted; latency {} per request (RTT = {}); {} measured runs after 1 \
         warm-up; {cores} CPU cores; target for grants ≤ {TARGET_RTTS} RTT + {} = {}\n",
        ms(args.latency),
        ms(RTT),
        args.runs,
        ms(TARGET_SLACK),
        ms(target),
    );
    println!(
        "| N | variant | sign-in (median) | grants median | grants min | grants median (RTT) | total median | grants ≤ target | CPU in grants (median) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|:---:|---:|");
    runtime.block_on(async {
        for &n in &args.sizes {
            let started = Instant::now();
            let tb = Testbed::start(world(n, args.latency))
                .await
                .expect("testbed");
            eprintln!("N = {n}: testbed up in {}", ms(started.elapsed()));
            for variant in [Variant::Discovered, Variant::PolicyAs, Variant::ReSignIn] {
                let policy = policy(&tb, variant);
                run_once(&tb, &policy, n, variant).await; // warm-up
                let mut samples = Vec::new();
                for _ in 0..args.runs {
                    samples.push(run_once(&tb, &policy, n, variant).await);
                }
                let grants: Vec<Duration> = samples.iter().map(|s| s.grants).collect();
                let sign_in = median(samples.iter().map(|s| s.sign_in).collect());
                let totals = median(samples.iter().map(|s| s.sign_in + s.grants).collect());
                let cpu = median(samples.iter().map(|s| s.grants_cpu).collect());
                let min = grants.iter().min().copied().unwrap_or_default();
                let med = median(grants);
                println!(
                    "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    variant.name(),
                    ms(sign_in),
                    ms(med),
                    ms(min),
                    rtts(med),
                    ms(totals),
                    if med <= target { "yes" } else { "no" },
                    ms(cpu),
                );
            }
        }
    });
}
