//! `make bench-fleet`: simulates the day (10,000 agents × 20 servers, sign-ins 09:00–09:30,
//! a day of refreshes, a 20-minute outage at 13:00), prints the IdP's and the busiest
//! authorization server's requests per second per phase and the targets' verdicts, and writes the
//! table (Markdown), the per-second series (CSV) and a PNG plot to the output directory.
//!
//! Usage: `lanyard-bench-fleet [--agents N] [--seed S] [--out DIR] [--font FILE]
//! [--refresh-jitter F] [--recovery-jitter-secs S] [--max-concurrency-per-host N]` (the last three
//! override the policy defaults, to see what another setting would do).
//! Exits 0 whatever the verdicts (the figures are the product); 2 on bad arguments or when the
//! output cannot be written.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use lanyard_fleet::month::{quantile, simulate_month, MonthConfig, MonthReport};
use lanyard_fleet::{clock, rates, report, simulate, FleetConfig, HostReport, Load, Rates, Report};
use plotters::prelude::*;
use plotters::style::FontStyle;

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct Args {
    agents: usize,
    /// People in the month of use (`--users`).
    users: usize,
    refresh_jitter: Option<f64>,
    recovery_jitter_secs: Option<u64>,
    per_host: Option<usize>,
    seed: u64,
    out: PathBuf,
    font: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        agents: 10_000,
        users: 10_000,
        refresh_jitter: None,
        recovery_jitter_secs: None,
        per_host: None,
        seed: 9,
        out: PathBuf::from("target/artifacts/bench-fleet"),
        font: PathBuf::from(DEFAULT_FONT),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--agents" => args.agents = value()?.parse().map_err(|e| format!("--agents: {e}"))?,
            "--users" => args.users = value()?.parse().map_err(|e| format!("--users: {e}"))?,
            "--refresh-jitter" => {
                args.refresh_jitter = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--refresh-jitter: {e}"))?,
                )
            }
            "--recovery-jitter-secs" => {
                args.recovery_jitter_secs = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--recovery-jitter-secs: {e}"))?,
                )
            }
            "--max-concurrency-per-host" => {
                args.per_host = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-concurrency-per-host: {e}"))?,
                )
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--out" => args.out = PathBuf::from(value()?),
            "--font" => args.font = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lanyard-bench-fleet: {e}");
            std::process::exit(2);
        }
    };
    let mut cfg = FleetConfig::standard(args.agents);
    cfg.seed = args.seed;
    if let Some(j) = args.refresh_jitter {
        cfg.refresh.jitter = j;
    }
    if let Some(j) = args.recovery_jitter_secs {
        cfg.retry.recovery_jitter_secs = j;
    }
    if let Some(n) = args.per_host {
        cfg.max_concurrency_per_host = n;
    }
    let started = Instant::now();
    let load = simulate(&cfg);
    let elapsed = started.elapsed();
    let report = report(&cfg, &load, 1);
    let mut table = markdown(&cfg, &report, elapsed.as_secs_f64());
    table.push_str(&month_markdown(args.users, args.seed));
    print!("{table}");
    if let Err(e) = write_outputs(&args, &cfg, &load, &report, &table) {
        eprintln!("lanyard-bench-fleet: {e}");
        std::process::exit(2);
    }
    println!("\nwritten to {}/", args.out.display());
}

fn write_outputs(
    args: &Args,
    cfg: &FleetConfig,
    load: &Load,
    report: &Report,
    table: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let write = |name: &str, text: &str| {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("bench-fleet.md", table)?;
    write("summary.csv", &summary_csv(report))?;
    write("per-second.csv", &series_csv(cfg, load, report))?;
    plot(args, cfg, load, report)
}

fn row(out: &mut String, host: &str, phase: &str, r: Rates) {
    let _ = writeln!(
        out,
        "| {host} | {phase} | {:.0} | {:.1} | {:.0} |",
        r.peak, r.mean, r.p99
    );
}

fn markdown(cfg: &FleetConfig, report: &Report, secs: f64) -> String {
    let mut out = String::new();
    let (o0, o1) = cfg.outage;
    let _ = writeln!(
        out,
        "Fleet day: {} agents × {} servers on {} authorization servers; sign-ins {}–{} \
         (uniform); access and ID tokens {} min, IdP refresh token outlives the day; outage \
         {}–{} (every request fails); {} h simulated in {:.1} s (seed {}).\n",
        cfg.agents,
        cfg.servers(),
        cfg.as_names.len(),
        clock(cfg, 0),
        clock(cfg, cfg.sign_in_window),
        cfg.access_token_secs / 60,
        clock(cfg, o0),
        clock(cfg, o1),
        cfg.duration / 3600,
        secs,
        cfg.seed,
    );
    let _ = writeln!(
        out,
        "Settings: refresh at {} of the lifetime, refresh_jitter {}, \
         recovery_jitter_secs {}, max_concurrency_per_host {} (a grant holds its slot {} ms).\n",
        cfg.refresh.fraction,
        cfg.refresh.jitter,
        cfg.retry.recovery_jitter_secs,
        cfg.max_concurrency_per_host,
        cfg.grant_ms,
    );
    let _ = writeln!(out, "| host | phase | peak rps | mean rps | p99 rps |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let phases = |out: &mut String, h: &HostReport| {
        row(out, &h.name, "sign-in wave", h.sign_in_wave);
        row(out, &h.name, "steady state", h.steady);
        row(out, &h.name, "recovery (1 h after outage)", h.recovery);
    };
    phases(&mut out, &report.idp);
    phases(&mut out, &report.busiest_as);
    let _ = writeln!(
        out,
        "\nSteady state: from 2 h after the wave to the outage, and from 2 h after the outage to \
         the end of the day. Requests that failed during the outage (never reached a host): {}.\n",
        report.failed_attempts
    );
    let _ = writeln!(out, "| target | measured | met |");
    let _ = writeln!(out, "|---|---|---|");
    for v in &report.verdicts {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            v.target,
            v.measured,
            if v.met { "met" } else { "NOT met" }
        );
    }
    out
}

/// The month of people: ID-JAGs per user per server, always warm against use-driven refresh at
/// several `idle_after_secs`, and what the IdP sees on the outage day.
fn month_markdown(users: usize, seed: u64) -> String {
    let mut out = String::new();
    let started = Instant::now();
    let mut runs: Vec<(String, MonthConfig, MonthReport)> = Vec::new();
    // (label, idle_after_secs, budget, use_refresh_token, renewed late when in use)
    for (label, idle, budget, refresh_token, late) in [
        ("always warm (before)", 0, None, false, false),
        (
            "idle 15 min, in use renewed at 45–75 % (before)",
            900,
            None,
            false,
            false,
        ),
        ("use-driven, idle 1 min", 60, None, false, true),
        ("use-driven, idle 5 min", 300, None, false, true),
        ("use-driven, idle 15 min (default)", 900, None, false, true),
        ("use-driven, idle 30 min", 1800, None, false, true),
        ("use-driven, idle 1 h", 3600, None, false, true),
        ("use-driven, idle 3 h", 3 * 3600, None, false, true),
        ("idle 15 min + budget 60", 900, Some(60), false, true),
        ("idle 15 min + use_refresh_token", 900, None, true, true),
    ] {
        let mut cfg = MonthConfig::standard(users);
        cfg.seed = seed;
        cfg.idle_after_secs = idle;
        cfg.budget = budget;
        cfg.use_refresh_token = refresh_token;
        cfg.late_renewal = late;
        let report = simulate_month(&cfg);
        runs.push((label.to_owned(), cfg, report));
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "
A month of people: {users} users × 20 servers (7 authorization servers), 1 h tokens, \
         30 days from a Monday, simulated {} times in {secs:.1} s (seed {seed}). Each user uses 1 \
         to 5 servers (popular ones more often); laptops wake 08:30–09:30 and sleep 17:00–19:00 on \
         workdays and all weekend; on 15 % of workdays a user opens no AI client; a used server \
         is used on 60 % of days in 1–4 bursts of 5–90 min, a request every 20 s–5 min; the \
         agent restarts (a sign-in: every server granted once) each Monday; an outage of 20 min \
         at 13:00 on day 2.
",
        runs.len()
    );
    let _ = writeln!(
        out,
        "| refresh | ID-JAGs / user / server / month (mean of 20) | on a server the user uses (mean) | p95 user: mean of 20 | p95 user: busiest server | worst user's busiest server | requests that waited for a mint | requests refused (the outage) | IdP ID-JAGs / user / month | busiest AS jwt-bearer / user / month |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, cfg, r) in &runs {
        let means = r.mean_per_user();
        let busiest: Vec<f64> = r
            .busiest_server_per_user()
            .iter()
            .map(|&b| f64::from(b))
            .collect();
        let used: Vec<f64> = r
            .used
            .iter()
            .enumerate()
            .flat_map(|(u, servers)| servers.iter().map(move |&s| (u, s)))
            .map(|(u, s)| f64::from(r.of(u, s)))
            .collect();
        let total: u64 = r.per_as.iter().sum();
        let busiest_as = r.per_as.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {label} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} % | {:.0} | {:.0} | {:.0} |",
            means.iter().sum::<f64>() / means.len().max(1) as f64,
            used.iter().sum::<f64>() / used.len().max(1) as f64,
            quantile(&means, 0.95),
            quantile(&busiest, 0.95),
            quantile(&busiest, 1.0),
            100.0 * r.waited as f64 / r.requests.max(1) as f64,
            r.refused,
            total as f64 / cfg.users as f64,
            busiest_as as f64 / cfg.users as f64,
        );
    }
    let _ = writeln!(
        out,
        "
The IdP on day 2 (every request it sees: sign-ins, session renewals, ID-JAG exchanges), \
         requests per second; steady is 10:00–12:59 and 15:00–16:59, after the outage is \
         13:20–17:00:
"
    );
    let _ = writeln!(
        out,
        "| refresh | steady peak | steady mean | peak / mean | after the outage: peak | / steady mean | per 10 s: steady peak / mean | after the outage / steady mean |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, _, r) in &runs {
        let steady = rates(
            &r.idp_day,
            &[(10 * 3600, 13 * 3600), (15 * 3600, 17 * 3600)],
            1,
        );
        let after = rates(&r.idp_day, &[(13 * 3600 + 20 * 60, 17 * 3600)], 1);
        let steady10 = rates(
            &r.idp_day,
            &[(10 * 3600, 13 * 3600), (15 * 3600, 17 * 3600)],
            10,
        );
        let after10 = rates(&r.idp_day, &[(13 * 3600 + 20 * 60, 17 * 3600)], 10);
        let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "| {label} | {:.0} | {:.1} | {:.2} × | {:.0} | {:.2} × | {:.2} × | {:.2} × |",
            steady.peak,
            steady.mean,
            ratio(steady.peak, steady.mean),
            after.peak,
            ratio(after.peak, steady.mean),
            ratio(steady10.peak, steady10.mean),
            ratio(after10.peak, steady10.mean),
        );
    }
    out
}

fn summary_csv(report: &Report) -> String {
    let mut out = String::from("host,phase,peak_rps,mean_rps,p99_rps\n");
    for h in [&report.idp, &report.busiest_as] {
        for (phase, r) in [
            ("sign_in_wave", h.sign_in_wave),
            ("steady", h.steady),
            ("recovery", h.recovery),
            ("after_outage", h.after_outage),
        ] {
            let _ = writeln!(
                out,
                "{},{phase},{:.0},{:.2},{:.0}",
                h.name, r.peak, r.mean, r.p99
            );
        }
    }
    out
}

fn series_csv(cfg: &FleetConfig, load: &Load, report: &Report) -> String {
    let mut out = String::from("second,clock,idp_rps,busiest_as_rps\n");
    let busiest = &load.per_as[report.busiest_as_index];
    for (t, (&idp, &as_)) in load.idp.iter().zip(busiest).enumerate() {
        let _ = writeln!(out, "{t},{},{idp},{as_}", clock(cfg, t as u64));
    }
    out
}

fn plot(args: &Args, cfg: &FleetConfig, load: &Load, report: &Report) -> Result<(), String> {
    let font = std::fs::read(&args.font).map_err(|e| {
        format!(
            "the plot needs a TrueType font at {} (Debian: fonts-dejavu-core; or --font FILE): {e}",
            args.font.display()
        )
    })?;
    // The font lives as long as the process; plotters keeps a 'static reference.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| format!("{} is not a usable font", args.font.display()))?;
    let path = args.out.join("bench-fleet.png");
    draw(&path, cfg, load, report).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw(
    path: &std::path::Path,
    cfg: &FleetConfig,
    load: &Load,
    report: &Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let busiest = &load.per_as[report.busiest_as_index];
    let hour = |t: usize| (cfg.clock_origin as f64 + t as f64) / 3600.0;
    let x0 = hour(0);
    let x1 = hour(load.idp.len());
    let limit = 3.0 * report.idp.steady.mean;
    let y_max = load
        .idp
        .iter()
        .chain(busiest)
        .copied()
        .max()
        .unwrap_or(1)
        .max(limit.ceil() as u32) as f64
        * 1.1;
    let root = BitMapBackend::new(path, (1600, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} agents × {} servers: requests per second at the IdP and the busiest AS",
                cfg.agents,
                cfg.servers()
            ),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time of day (h)")
        .y_desc("requests per second")
        .x_label_formatter(&|h| format!("{:02}:00", (*h as u64) % 24))
        .x_labels(13)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()?;
    let (o0, o1) = cfg.outage;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(hour(o0 as usize), 0.0), (hour(o1 as usize), y_max)],
            RGBColor(255, 190, 120).mix(0.5).filled(),
        )))?
        .label(format!(
            "outage {}–{} (every request fails)",
            clock(cfg, o0),
            clock(cfg, o1)
        ))
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 6), (x + 16, y + 6)],
                RGBColor(255, 190, 120).filled(),
            )
        });
    let blue = RGBColor(31, 119, 180);
    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(LineSeries::new(
            load.idp
                .iter()
                .enumerate()
                .map(|(t, &c)| (hour(t), c as f64)),
            blue.stroke_width(1),
        ))?
        .label(format!(
            "IdP (steady mean {:.0} rps)",
            report.idp.steady.mean
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            busiest
                .iter()
                .enumerate()
                .map(|(t, &c)| (hour(t), c as f64)),
            red.stroke_width(1),
        ))?
        .label(format!(
            "busiest AS: {} (steady mean {:.0} rps)",
            report.busiest_as.name, report.busiest_as.steady.mean
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            [(x0, limit), (x1, limit)],
            BLACK.mix(0.6).stroke_width(1),
        ))?
        .label("3 × IdP steady mean (the target after the outage)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
