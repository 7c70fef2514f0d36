//! Sign-in → every server `Granted`, for N = 1, 10, 50, 200 MCP servers (each behind its own
//! authorization server), with 50 ms latency added to every testbed request (RTT = 50 ms).
//!
//!     cargo build --release -p lanyard-testbed                       (make bench does both)
//!     cargo bench -p lanyard-tests --bench signin_to_granted
//!     … -- --runs 3 --n 1,10 --latency-ms 0 --cap 32                (fewer runs, sizes; no latency)
//!
//! The testbed runs in its own process (`lanyard-testbed serve --servers N`, the release build
//! next to this benchmark's directory, or `LANYARD_TESTBED_BIN`), so its RSA signing is not counted
//! as the engine's: the CPU column is this process alone, the engine and its HTTP client. Per N and
//! variant: one warm-up run (the testbed's authorization servers fetch the IdP's JWKS once, on
//! their first jwt-bearer request; that is testbed start-up, not engine work), then `--runs`
//! measured runs, each with a fresh engine and an empty in-memory store. Measured:
//!
//! * sign-in: `sign_in()` called → returned (IdP discovery, the scripted browser's login, code
//!   exchange);
//! * grants: `sign_in()` returned → every server `Granted`. Targets: N ≤ 50: ≤ 3 RTT + 50 ms;
//!   N > 50: ≤ (⌈N / cap⌉ + 2) RTT, where cap is how many grants may be in flight at once;
//! * engine CPU per grant: this process's CPU time in the grants phase (every thread's
//!   `/proc/self/task/*/schedstat`, nanoseconds) over N; target ≤ 0.5 ms in a release build;
//! * the IdP's peak: the most token requests the IdP ever had in flight from this client, from the
//!   testbed's traffic log (`--traffic-file`).
//!
//! Variants: `discovered` (the policy names only the MCP URL: 401 probe, protected resource
//! metadata, AS metadata, token exchange, jwt-bearer = 5 RTT), `policy AS` (the policy names the
//! authorization server and resource: AS metadata, exchange, jwt-bearer = 3 RTT) and `re-sign-in`
//! (the `discovered` policy, signed out and in again in the same engine, which keeps what it
//! discovered: exchange + jwt-bearer = 2 RTT; the IdP client is cached too).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanyard_core::engine::{self, EngineHandle, IdpStatus, ServerState, Status};
use lanyard_core::policy::Settings;
use lanyard_core::store::MemoryStore;
use lanyard_testbed::TestClock;
use serde_json::{json, Value};

const RTT: Duration = Duration::from_millis(50);
const SMALL_N: usize = 50;
const SMALL_TARGET_RTTS: u32 = 3;
const SMALL_TARGET_SLACK: Duration = Duration::from_millis(50);
const CPU_PER_GRANT_TARGET: Duration = Duration::from_micros(500);

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
    /// CPU time of this process (the engine) during the grants phase.
    grants_cpu: Duration,
    /// CPU time of the testbed process during the grants phase.
    testbed_cpu: Duration,
}

/// CPU time this process's live threads have used: the first field of every
/// `/proc/self/task/*/schedstat` (nanoseconds). Threads that have exited are not counted; the
/// engine's runtime threads live for the whole benchmark. Zero where there is no procfs.
fn process_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut nanos = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanos += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(nanos)
}

/// CPU time (user + system) of another process, from `/proc/PID/stat` (clock ticks of 10 ms).
fn other_process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The testbed, in its own process, with the files it wrote.
struct TestbedProcess {
    child: Child,
    dir: PathBuf,
    policy: Value,
    urls: Value,
}

fn testbed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LANYARD_TESTBED_BIN") {
        return PathBuf::from(path);
    }
    // target/release/deps/signin_to_granted-HASH → target/release/lanyard-testbed
    let exe = std::env::current_exe().expect("the benchmark's own path");
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("lanyard-testbed"))
        .expect("the benchmark lives in target/<profile>/deps")
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

impl TestbedProcess {
    fn start(n: usize, latency: Duration) -> TestbedProcess {
        let bin = testbed_binary();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --release -p lanyard-testbed` (make bench does)",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("lanyard-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let mut child = Command::new(&bin)
            .args(["serve", "--servers", &n.to_string(), "--token-secs", "3600"])
            .args(["--latency-ms", &latency.as_millis().to_string()])
            .arg("--write-policy")
            .arg(dir.join("policy.json"))
            .arg("--port-file")
            .arg(dir.join("urls.json"))
            .arg("--traffic-file")
            .arg(dir.join("traffic.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lanyard-testbed");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let (Some(policy), Some(urls)) = (
                read_json(&dir.join("policy.json")),
                read_json(&dir.join("urls.json")),
            ) {
                return TestbedProcess {
                    child,
                    dir,
                    policy,
                    urls,
                };
            }
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the testbed did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the testbed (SIGINT, so it writes its traffic log) and returns the log.
    fn stop(mut self) -> Value {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let traffic = read_json(&self.dir.join("traffic.json")).unwrap_or(Value::Null);
        let _ = std::fs::remove_dir_all(&self.dir);
        traffic
    }
}

fn policy(tb: &TestbedProcess, variant: Variant, cap: usize) -> Value {
    let mut policy = tb.policy.clone();
    policy["settings"] = json!({"max_concurrency": cap});
    if variant == Variant::PolicyAs {
        let mcps = tb.urls["mcp_servers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for server in policy["servers"].as_array_mut().into_iter().flatten() {
            let name = server["id"].as_str().unwrap_or_default().to_owned();
            let Some(mcp) = mcps.iter().find(|m| m["name"] == name.as_str()) else {
                continue;
            };
            server["authorization_server"] = mcp["auth_server"].clone();
            server["resource"] = mcp["resource"].clone();
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
async fn sign_in_and_grant(engine: &EngineHandle, n: usize, testbed: u32) -> Sample {
    let start = Instant::now();
    engine.sign_in().await.expect("sign-in");
    let signed_in = Instant::now();
    let cpu_before = process_cpu();
    let testbed_before = other_process_cpu(testbed);
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
    let testbed_cpu = other_process_cpu(testbed).saturating_sub(testbed_before);
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
        testbed_cpu,
    }
}

async fn run_once(policy: &Value, n: usize, variant: Variant, testbed: u32) -> Sample {
    let browser = kit::ScriptedBrowser::new("alice");
    // Real time on both sides: the testbed process reads the wall clock too.
    let clock = TestClock::new();
    let mut config = kit::engine_config(policy, Arc::new(MemoryStore::new()), &clock, browser);
    config.restore_session = false;
    let engine = engine::start(config).expect("engine");
    let mut sample = sign_in_and_grant(&engine, n, testbed).await;
    if variant == Variant::ReSignIn {
        engine.sign_out().await.expect("sign-out");
        engine
            .wait_for(|s| matches!(s.idp, IdpStatus::SignedOut))
            .await
            .expect("signed out");
        sample = sign_in_and_grant(&engine, n, testbed).await;
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

/// The grants target for N servers: ≤ 3 RTT + 50 ms up to 50, then ⌈N / cap⌉ + 2 RTT.
fn target(n: usize, cap: usize) -> Duration {
    if n <= SMALL_N {
        RTT * SMALL_TARGET_RTTS + SMALL_TARGET_SLACK
    } else {
        let rounds = n.div_ceil(cap.max(1)) as u32;
        RTT * (rounds + 2)
    }
}

struct Args {
    runs: usize,
    sizes: Vec<usize>,
    /// Latency per request; 0 shows the processing floor.
    latency: Duration,
    /// `settings.max_concurrency` for the runs.
    cap: usize,
}

fn args() -> Args {
    let mut args = Args {
        runs: 5,
        sizes: vec![1, 10, 50, 200],
        latency: RTT,
        cap: Settings::default().max_concurrency,
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
            "--cap" => {
                args.cap = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--cap <grants in flight>")
            }
            _ => {} // `cargo bench` passes `--bench`
        }
    }
    args.runs = args.runs.max(1);
    args.cap = args.cap.max(1);
    args
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "sign-in → all N granted; latency {} per request (RTT = {}); {} measured runs after 1 \
         warm-up; {cores} CPU cores; testbed in its own process; cap (max_concurrency) = {}\n\
         targets: grants ≤ {SMALL_TARGET_RTTS} RTT + {} for N ≤ {SMALL_N}, ≤ (⌈N / cap⌉ + 2) RTT \
         above; engine CPU ≤ {} per grant\n",
        ms(args.latency),
        ms(RTT),
        args.runs,
        args.cap,
        ms(SMALL_TARGET_SLACK),
        format_args!("{:.1} ms", CPU_PER_GRANT_TARGET.as_secs_f64() * 1000.0),
    );
    println!(
        "| N | variant | sign-in (median) | grants median | grants min | grants median (RTT) | target | met | engine CPU per grant (median) | CPU met | IdP peak in flight | testbed CPU in grants |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|:---:|---:|:---:|---:|---:|");
    let mut rows = Vec::new();
    runtime.block_on(async {
        for &n in &args.sizes {
            let started = Instant::now();
            let tb = TestbedProcess::start(n, args.latency);
            eprintln!("N = {n}: testbed up in {}", ms(started.elapsed()));
            for variant in [Variant::Discovered, Variant::PolicyAs, Variant::ReSignIn] {
                let policy = policy(&tb, variant, args.cap);
                let pid = tb.child.id();
                run_once(&policy, n, variant, pid).await; // warm-up
                let mut samples = Vec::new();
                for _ in 0..args.runs {
                    samples.push(run_once(&policy, n, variant, pid).await);
                }
                let grants: Vec<Duration> = samples.iter().map(|s| s.grants).collect();
                let sign_in = median(samples.iter().map(|s| s.sign_in).collect());
                let cpu = median(samples.iter().map(|s| s.grants_cpu).collect()) / n as u32;
                let testbed_cpu = median(samples.iter().map(|s| s.testbed_cpu).collect());
                let min = grants.iter().min().copied().unwrap_or_default();
                let med = median(grants);
                rows.push((n, variant, sign_in, med, min, cpu, testbed_cpu));
            }
            let traffic = tb.stop();
            let idp_peak = traffic["peak_in_flight"]["idp"].as_u64();
            for (n, variant, sign_in, med, min, cpu, testbed_cpu) in rows.drain(..) {
                let goal = target(n, args.cap);
                println!(
                    "| {n} | {} | {} | {} | {} | {} | {} | {} | {:.3} ms | {} | {} | {} |",
                    variant.name(),
                    ms(sign_in),
                    ms(med),
                    ms(min),
                    rtts(med),
                    ms(goal),
                    if med <= goal { "yes" } else { "no" },
                    cpu.as_secs_f64() * 1000.0,
                    if cpu <= CPU_PER_GRANT_TARGET {
                        "yes"
                    } else {
                        "no"
                    },
                    idp_peak.map_or("?".to_owned(), |p| p.to_string()),
                    ms(testbed_cpu),
                );
            }
        }
    });
}
