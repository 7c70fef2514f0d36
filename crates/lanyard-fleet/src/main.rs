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

use lanyard_fleet::{clock, report, simulate, FleetConfig, HostReport, Load, Rates, Report};
use plotters::prelude::*;
use plotters::style::FontStyle;

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct Args {
    agents: usize,
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
    let table = markdown(&cfg, &report, elapsed.as_secs_f64());
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
