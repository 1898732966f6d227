"""Prints scripts/bench-hub's results (JSON lines from hub-loadgen) as a Markdown table.

Each case gets two rates from its rate steps, each with its deliveries per second and
latency percentiles. The first is the highest step that delivered every message (at least
95 % of them) with p99 latency within the limit. The second is the highest step that
delivered every message, whatever the latency. Then the server's resident memory per idle connection and, for the
hub, the ratio of its no-loss deliveries per second to Socket.IO's at the same client count
and pinning. Deliveries per server CPU-second divide the no-loss rate by the CPU time the
server used, which stays meaningful when other processes take part of the server's core.
"""

import json
import sys


def best_step(run, require_latency):
    passed = [
        step
        for step in run["steps"]
        if step["failed"] is None and (step["within_latency_limit"] or not require_latency)
    ]
    return max(passed, key=lambda step: step["deliveries_per_second"], default=None)


def describe(step):
    if step is None:
        return "none"
    latency = step["latency"]
    return (
        f'{step["deliveries_per_second"]:,.0f} '
        f'({latency["p50_ms"]:.1f} / {latency["p99_ms"]:.1f} / {latency["p999_ms"]:.1f})'
    )


def main(path):
    with open(path, encoding="utf-8") as results:
        runs = [json.loads(line) for line in results if line.strip()]

    no_loss = {}
    for run in runs:
        step = best_step(run, require_latency=False)
        key = (run["label"], run["target"], run["connections_requested"])
        no_loss[key] = step["deliveries_per_second"] if step else 0.0

    print(
        "| pinning | server | clients (joined) | deliveries/s with p99 <= limit "
        "(p50 / p99 / p99.9 ms) | deliveries/s without loss (p50 / p99 / p99.9 ms) "
        "| server cores at it | deliveries per server CPU-second | stopped because | KiB per idle connection "
        "| hub / Socket.IO without loss | load avg |"
    )
    print("|" + "---|" * 11)
    for run in runs:
        within = best_step(run, require_latency=True)
        full = best_step(run, require_latency=False)
        stopped = next((s["failed"] for s in run["steps"] if s["failed"]), "step limit reached")
        name = "Rust hub" if run["target"] == "signalr" else "Socket.IO"
        clients = f'{run["connections_requested"]} ({run["connections_joined"]})'
        cores = f'{full["server_cpu_cores"]:.2f}' if full else "-"
        efficiency = "-"
        if full and full["server_cpu_cores"] > 0:
            efficiency = f'{full["deliveries_per_second"] / full["server_cpu_cores"]:,.0f}'

        ratio = "-"
        baseline = no_loss.get((run["label"], "socketio", run["connections_requested"]))
        if run["target"] == "signalr" and baseline:
            hub = no_loss[(run["label"], "signalr", run["connections_requested"])]
            ratio = f"{hub / baseline:.2f}"

        memory = f'{run["bytes_per_idle_connection"] / 1024:.1f}'
        load = run.get("load_average")
        row = [
            run["label"],
            name,
            clients,
            describe(within),
            describe(full),
            cores,
            efficiency,
            stopped,
            memory,
            ratio,
            f"{load:.1f}" if load is not None else "-",
        ]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
