#!/usr/bin/env python3
"""The numbers of scripts/many-servers-bench.sh (standard library only).

`sample TRAFFIC.json --servers N ...` turns one run (the testbed's traffic log plus what the shell
measured of the agent) into one JSON sample on stdout; `table SAMPLE.json...` prints the markdown
table and the target line. Nothing here decides a result the data did not show: every figure is
computed from the log or passed in as measured.
"""
import argparse
import json
import sys
from collections import Counter


def per_second(starts_ms, begin_ms, end_ms):
    """Requests per whole second of [begin_ms, end_ms), every second present (zeros included)."""
    seconds = max(1, (end_ms - begin_ms) // 1000)
    counts = Counter((s - begin_ms) // 1000 for s in starts_ms if begin_ms <= s < end_ms)
    return [counts.get(i, 0) for i in range(seconds)]


def sample(args):
    with open(args.traffic) as f:
        traffic = json.load(f)
    requests = traffic.get("requests", [])
    if not requests:
        sys.exit(f"{args.traffic}: the testbed logged no token requests")
    first = min(r["start_ms"] for r in requests)
    window_begin = first + args.signin_to_granted_ms
    window_end = window_begin + args.window_secs * 1000
    signin = [r for r in requests if r["start_ms"] < window_begin]
    window = [r for r in requests if window_begin <= r["start_ms"] < window_end]
    idp = [r["start_ms"] for r in window if r["component"] == "idp"]
    auth = [r["start_ms"] for r in window if r["component"] != "idp"]
    idp_rate = per_second(idp, window_begin, window_end)
    as_rate = per_second(auth, window_begin, window_end)
    busiest_as = Counter(r["component"] for r in window if r["component"] != "idp")
    return {
        "servers": args.servers,
        "settings": args.settings,
        "cap": args.cap,
        "per_host_cap": args.settings.get("max_concurrency_per_host", 0),
        "token_secs": args.token_secs,
        "window_secs": args.window_secs,
        "signin_to_granted_ms": args.signin_to_granted_ms,
        "signin_cpu_ms": args.signin_cpu_ms,
        "window_cpu_ms": args.window_cpu_ms,
        "rss_kb": {
            "started": args.rss_start_kb,
            "granted": args.rss_granted_kb,
            "end": args.rss_end_kb,
            "peak": max(args.rss_peak_kb, args.rss_granted_kb, args.rss_end_kb),
        },
        "granted_at_end": args.granted_end,
        "signin_requests": len(signin),
        "signin_peak_in_flight": max((r["in_flight_all"] for r in signin), default=0),
        "window_idp_requests": len(idp),
        "window_as_requests": len(auth),
        "window_idp_rps_max": max(idp_rate),
        "window_as_rps_max": max(as_rate),
        "window_as_rps_mean": round(len(auth) / args.window_secs, 2),
        "window_idp_rps_mean": round(len(idp) / args.window_secs, 2),
        "window_busiest_as_requests": busiest_as.most_common(1)[0][1] if busiest_as else 0,
        "window_peak_in_flight": max((r["in_flight_all"] for r in window), default=0),
        "window_peak_in_flight_one_host": max((r["in_flight"] for r in window), default=0),
        "signin_peak_in_flight_idp": max(
            (r["in_flight"] for r in signin if r["component"] == "idp"), default=0),
        "peak_in_flight_all": traffic.get("peak_in_flight_all", 0),
        "peak_in_flight_idp": traffic.get("peak_in_flight", {}).get("idp", 0),
        "as_rate_per_second": as_rate,
        "idp_rate_per_second": idp_rate,
        "dropped": traffic.get("dropped", 0),
    }


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def table(paths):
    samples = sorted((json.load(open(p)) for p in paths), key=lambda s: s["servers"])
    print("| servers | sign-in → all granted | agent CPU, sign-in (per server) | RSS granted | RSS after "
          "window | peak RSS | refreshes in window (AS / IdP requests) | agent CPU per refresh | "
          "AS req/s max / mean | IdP req/s max / mean | sign-in: most at the IdP / cap | "
          "refreshes: most at one host / per-host cap | still granted |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        n = s["servers"]
        refreshes = s["window_as_requests"]
        per_refresh = s["window_cpu_ms"] / refreshes if refreshes else 0.0
        cap = s["cap"] if s["cap"] else "?"
        print(
            f"| {n} | {s['signin_to_granted_ms'] / 1000:.2f} s | {s['signin_cpu_ms']} ms "
            f"({s['signin_cpu_ms'] / n:.2f} ms) | {mb(s['rss_kb']['granted'])} | "
            f"{mb(s['rss_kb']['end'])} | {mb(s['rss_kb']['peak'])} | {refreshes} / "
            f"{s['window_idp_requests']} | {per_refresh:.2f} ms | {s['window_as_rps_max']} / "
            f"{s['window_as_rps_mean']} | {s['window_idp_rps_max']} / {s['window_idp_rps_mean']} | "
            f"{s['signin_peak_in_flight_idp']} / {cap} | "
            f"{s['window_peak_in_flight_one_host']} / {s['per_host_cap'] or '?'} | "
            f"{s['granted_at_end']} of {n} |"
        )
    print()
    by_n = {s["servers"]: s for s in samples}
    if 10 in by_n and 500 in by_n:
        small = max(by_n[10]["rss_kb"]["granted"], by_n[10]["rss_kb"]["end"])
        large = max(by_n[500]["rss_kb"]["granted"], by_n[500]["rss_kb"]["end"])
        verdict = "met" if large <= 2 * small else "NOT met"
        print(f"target RSS(500) ≤ 2 × RSS(10): {mb(large)} vs 2 × {mb(small)} = {mb(2 * small)}: {verdict}")
    for s in samples:
        if s["cap"]:
            over = s["signin_peak_in_flight_idp"] > s["cap"]
            print(f"{s['servers']} servers, sign-in: most token requests in flight at the IdP "
                  f"{s['signin_peak_in_flight_idp']}, max_concurrency {s['cap']}: "
                  f"{'ABOVE the cap' if over else 'never above the cap'}")
        if s["per_host_cap"]:
            over = s["window_peak_in_flight_one_host"] > s["per_host_cap"]
            print(f"{s['servers']} servers, refreshes: most in flight at one host "
                  f"{s['window_peak_in_flight_one_host']}, max_concurrency_per_host "
                  f"{s['per_host_cap']}: {'ABOVE the cap' if over else 'never above the cap'}")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample")
    p.add_argument("traffic")
    for name in ["servers", "token-secs", "window-secs", "signin-to-granted-ms", "signin-cpu-ms",
                 "window-cpu-ms", "rss-start-kb", "rss-granted-kb", "rss-end-kb", "rss-peak-kb",
                 "granted-end"]:
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--cap", type=int, default=0)
    p.add_argument("--settings", type=json.loads, default={})
    t = sub.add_parser("table")
    t.add_argument("samples", nargs="+")
    args = parser.parse_args()
    if args.command == "sample":
        json.dump(sample(args), sys.stdout, indent=1)
        print()
    else:
        table(args.samples)


if __name__ == "__main__":
    main()
