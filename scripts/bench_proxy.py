"""Benchmark P3: what a stdio bridge adds to every MCP `tools/call`, `lanyard proxy` vs npm mcp-remote.

Run by scripts/bench-proxy.sh (which starts the testbed and a signed-in agent); not on its own.
One client (the official Python MCP SDK) makes CALLS sequential `tools/call echo` requests per run
to the same testbed MCP server three ways:

  direct      streamable HTTP straight to the server, bearer token in a header (the baseline)
  lanyard     stdio -> `lanyard proxy docs` -> server (token from the agent per request)
  mcp-remote  stdio -> `node mcp-remote URL --header Authorization:${AUTH_HEADER}` -> server
  lanyard-dpop  stdio -> `lanyard proxy srv02` -> a DPoP-bound twin server: the token with a
              fresh proof per request, signed by the agent with its in-memory key

DPoP's cost is read against `lanyard` in the same round: the proxy's CPU per call (the target:
at most 0.1 ms more), the agent's CPU per call (where the proof is signed; --agent-pid) and the
latency.

Added latency = a bridge's per-call percentile minus the direct run's in the same round. Peak RSS
is the bridge process's VmHWM and CPU its utime+stime, both read from /proc before it is closed.
Rounds alternate the order (the machine drifts 10-17 % between runs). The token reaches
mcp-remote through the environment, never argv. Prints a markdown table and writes JSON to --json.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children():
    """Pids whose parent is this process."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def process_usage(pid):
    """(peak RSS in MiB, CPU seconds) of a live process."""
    peak_kib = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak_kib = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return peak_kib / 1024, cpu


def percentile(sorted_values, p):
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def drive(session, calls, warmup):
    await session.initialize()
    for i in range(warmup):
        await session.call_tool("echo", {"text": f"warm {i}"})
    latencies = []
    for i in range(calls):
        start = time.perf_counter_ns()
        result = await session.call_tool("echo", {"text": f"call {i}"})
        latencies.append((time.perf_counter_ns() - start) / 1e6)
        if result.is_error or result.content[0].text != f"call {i}":
            raise RuntimeError(f"call {i} came back wrong: {result}")
    return sorted(latencies)


async def run_direct(args, token):
    headers = {"Authorization": f"Bearer {token}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                return await drive(session, args.calls, args.warmup), None


async def run_stdio(args, params):
    # mcp-remote logs every message to stderr; neither bridge's log is part of the measurement.
    with open(os.devnull, "w") as quiet:
        return await run_stdio_logged(args, params, quiet)


async def run_stdio_logged(args, params, errlog):
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            latencies = await drive(session, args.calls, args.warmup)
            bridges = children()
            if len(bridges) != 1:
                raise RuntimeError(f"expected one bridge process, found {bridges}")
            return latencies, process_usage(bridges[0])


def lanyard_params(args, server):
    env = get_default_environment()
    env["XDG_RUNTIME_DIR"] = os.environ["XDG_RUNTIME_DIR"]
    return StdioServerParameters(command=args.lanyard, args=["proxy", server], env=env)


def mcp_remote_params(args, token):
    env = get_default_environment()
    env["AUTH_HEADER"] = f"Bearer {token}"
    return StdioServerParameters(
        command=args.node,
        args=[args.mcp_remote, args.url, "--header", "Authorization:${AUTH_HEADER}"],
        env=env,
    )


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanyard", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--mcp-remote", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--server", default="docs")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bound-server")
    parser.add_argument("--bound-url")
    parser.add_argument("--agent-pid", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    token = os.environ.pop("LANYARD_BENCH_TOKEN")

    rounds = []
    orders = [["direct", "lanyard", "lanyard-dpop", "mcp-remote"],
              ["mcp-remote", "lanyard-dpop", "lanyard", "direct"]]
    if not args.bound_server:
        orders = [[m for m in order if m != "lanyard-dpop"] for order in orders]
    for r in range(args.rounds):
        measured = {}
        for mode in orders[r % 2]:
            agent_before = process_usage(args.agent_pid)[1] if args.agent_pid else None
            if mode == "direct":
                latencies, usage = await run_direct(args, token)
            elif mode == "lanyard":
                latencies, usage = await run_stdio(args, lanyard_params(args, args.server))
            elif mode == "lanyard-dpop":
                latencies, usage = await run_stdio(args, lanyard_params(args, args.bound_server))
            else:
                latencies, usage = await run_stdio(args, mcp_remote_params(args, token))
            agent_cpu = (process_usage(args.agent_pid)[1] - agent_before) if args.agent_pid else None
            measured[mode] = {
                "agent_cpu_ms_per_call": agent_cpu * 1000 / (args.calls + args.warmup)
                if agent_cpu is not None else None,
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "mean_ms": statistics.fmean(latencies),
                "peak_rss_mib": usage[0] if usage else None,
                "cpu_ms_per_call": usage[1] * 1000 / (args.calls + args.warmup) if usage else None,
            }
            print(f"round {r + 1} {mode:<10} p50 {measured[mode]['p50_ms']:.3f} ms  "
                  f"p99 {measured[mode]['p99_ms']:.3f} ms", file=sys.stderr, flush=True)
        for mode in measured:
            if mode == "direct":
                continue
            m = measured[mode]
            m["added_p50_ms"] = m["p50_ms"] - measured["direct"]["p50_ms"]
            m["added_p99_ms"] = m["p99_ms"] - measured["direct"]["p99_ms"]
        rounds.append(measured)

    lines = [
        f"P3 — {args.calls} sequential tools/call per run, Python MCP SDK client, testbed MCP server on 127.0.0.1",
        "",
        "| round | bridge | p50 ms | p99 ms | added p50 ms | added p99 ms | peak RSS MiB | CPU ms/call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, measured in enumerate(rounds, 1):
        d = measured["direct"]
        lines.append(f"| {i} | direct (baseline) | {d['p50_ms']:.3f} | {d['p99_ms']:.3f} | – | – | – | – |")
        for mode in [m for m in ("lanyard", "lanyard-dpop", "mcp-remote") if m in measured]:
            m = measured[mode]
            lines.append(
                f"| {i} | {mode} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['added_p50_ms']:.3f} | "
                f"{m['added_p99_ms']:.3f} | {m['peak_rss_mib']:.1f} | {m['cpu_ms_per_call']:.3f} |")
    lines.append("")
    lines.append("| round | mcp-remote / lanyard: added p50 | added p99 | peak RSS | CPU per call |")
    lines.append("|---|---|---|---|---|")

    def ratio(a, b):
        return f"{a / b:.1f}×" if b > 0 else "∞ (lanyard adds ≤ 0)"

    for i, measured in enumerate(rounds, 1):
        lan, rem = measured["lanyard"], measured["mcp-remote"]
        lines.append(
            f"| {i} | {ratio(rem['added_p50_ms'], lan['added_p50_ms'])} | "
            f"{ratio(rem['added_p99_ms'], lan['added_p99_ms'])} | "
            f"{ratio(rem['peak_rss_mib'], lan['peak_rss_mib'])} | "
            f"{ratio(rem['cpu_ms_per_call'], lan['cpu_ms_per_call'])} |")
    if args.bound_server:
        lines.append("")
        lines.append("DPoP: `lanyard proxy` to the bound twin minus to the bearer server, same round")
        lines.append("")
        lines.append("| round | p50 ms | p99 ms | proxy CPU ms/call | agent CPU ms/call | proxy peak RSS MiB |")
        lines.append("|---|---|---|---|---|---|")
        for i, measured in enumerate(rounds, 1):
            lan, dp = measured["lanyard"], measured["lanyard-dpop"]
            lines.append(
                f"| {i} | {dp['p50_ms'] - lan['p50_ms']:+.3f} | {dp['p99_ms'] - lan['p99_ms']:+.3f} | "
                f"{dp['cpu_ms_per_call'] - lan['cpu_ms_per_call']:+.3f} | "
                f"{dp['agent_cpu_ms_per_call'] - lan['agent_cpu_ms_per_call']:+.3f} | "
                f"{dp['peak_rss_mib'] - lan['peak_rss_mib']:+.1f} |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"calls": args.calls, "rounds": rounds}, f, indent=2)


if __name__ == "__main__":
    asyncio.run(main())
