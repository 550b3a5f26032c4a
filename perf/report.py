#!/usr/bin/env python3
"""Turns the measurements of one perf/run.sh into a table and a chart.

    perf/report.py table <results.jsonl> <output prefix>
    perf/report.py line '<loadgen --json output>'

`table` reads one JSON object per line (written by perf/run.sh: the machine, the seed,
every loadgen and wrk run, peak memory) and writes <prefix>.md (the table the
README shows), <prefix>.json (everything, for scripts) and <prefix>.svg (QPS and
p99 per scenario at both concurrencies, the single node). A run with --cluster
also measured the fleet: its table follows, each figure beside the single
node's of the same run. `line` prints one run in
a line for the console. Standard library only, so it runs on a fresh machine
with nothing but python3.
"""

import json
import sys
from html import escape

SCENARIOS = ["login-fixed", "login-random", "profile", "nickname"]
LEVELS = [200, 2000]

# The goals of the second performance round, checked against the numbers of
# the same run (absolute throughputs move by half from one machine to the
# next, so the throughput goals are shares: of c=200 here, of the /healthz
# ceiling in HEALTHZ_SHARE_GOALS below).
P99_GOALS_MS = {"login-fixed": 10, "login-random": 25, "profile": 10}
C2000_SHARE = 0.9
RSS_GOALS_MB = {"tcpserver": 100, "httpserver": 300}
# The ceilings perf/run.sh measures with wrk, in the table's order: the
# machine's (nginx) and the shape's two (httpserver without an RPC, and with
# one Ping), each with its row label.
CEILINGS = {
    "nginx": "ceiling: nginx fixed 200 (wrk)",
    "static": "ceiling: httpserver static file (wrk)",
    "healthz": "ceiling: httpserver /healthz, one RPC Ping (wrk)",
}
# The second performance round: scenarios at c=200 at least this share of
# the /healthz ceiling of the same run.
HEALTHZ_SHARE_GOALS = {"profile": 0.70, "login-fixed": 0.55, "nickname": 0.45}
# The scale-out issue: on the same cores the fleet cannot be faster, but it
# must cost little: these scenarios at least this share of the single node's
# throughput, at both concurrencies, with no errors.
FLEET_SCENARIOS = ["login-fixed", "profile"]
FLEET_SHARE = 0.6

# Records written before the fleet was measured name no system.
SINGLE, FLEET = "single", "fleet"


def load(path):
    """Runs and peak memory keyed by system (SINGLE, FLEET), then as before."""
    runs, wrk, machine, seed, rss = {SINGLE: {}, FLEET: {}}, [], {}, None, {SINGLE: {}, FLEET: {}}
    cpu = {SINGLE: {}, FLEET: {}}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            item = json.loads(line)
            kind = item.get("kind")
            if kind == "machine":
                machine = item
            elif kind == "seed":
                seed = item.get("summary")
            elif kind == "loadgen":
                r = item["result"]
                runs[item.get("system", SINGLE)][(r["scenario"], r["concurrency"])] = r
            elif kind == "wrk":
                wrk.append(item)
            elif kind == "rss":
                rss[item.get("system", SINGLE)][item["concurrency"]] = item["peak_mb"]
            elif kind == "cpu":
                cpu[item["system"]][(item["scenario"], item["concurrency"])] = item["seconds"]
    return runs, wrk, machine, seed, rss, cpu


def fmt_int(n):
    return f"{n:,.0f}"


def fmt_ms(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ceiling_of(wrk, concurrency, target="nginx"):
    for w in wrk:
        if w["target"] == target and w["concurrency"] == concurrency:
            return w["result"]["qps"]
    return None


def table(all_runs, wrk, machine, seed, all_rss, all_cpu):
    runs, rss = all_runs[SINGLE], all_rss[SINGLE]
    out = []
    date = machine.get("date", "?")
    commit = machine.get("commit", "?")
    out.append(f"# usermgmt benchmark — {date}, commit `{commit}`\n")
    out.append(
        f"Machine: {machine.get('cores', '?')} cores ({machine.get('cpu', '?')}), "
        f"{machine.get('memory', '?')} RAM, Linux {machine.get('kernel', '?')}. "
        "The load generator, both servers, MariaDB and Redis share these cores.\n"
    )
    out.append(
        f"Command: `{machine.get('command', 'perf/run.sh')}` — each run {machine.get('duration', '?')} s, "
        f"{fmt_int(machine.get('accounts', 0))} seeded accounts, password-hash cost "
        f"{machine.get('hash_cost', '?')} (PBKDF2-HMAC-SHA256).\n"
    )
    out.append(
        "| scenario | concurrency | requests | QPS | of nginx | of static | of /healthz "
        "| p50 ms | p90 ms | p99 ms | max ms | errors |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def of_ceilings(r, scenario, c):
        return " | ".join(share_of(r["qps"], ceiling_of(wrk, c, target)) for target in CEILINGS)

    out.extend(matrix_rows(runs, of_ceilings))
    for target, label in CEILINGS.items():
        for w in wrk:
            if w["target"] != target:
                continue
            r = w["result"]
            lat = r["latency_ms"]
            shares = of_ceilings(r, target, w["concurrency"])
            out.append(
                f"| {label} | {w['concurrency']} | {fmt_int(r['requests'])} | "
                f"{fmt_int(r['qps'])} | {shares} | {fmt_ms(lat['p50'])} | {fmt_ms(lat['p90'])} | "
                f"{fmt_ms(lat['p99'])} | {fmt_ms(lat['max'])} | {r['errors']} |"
            )
    out.append("")
    if rss:
        for c, peaks in sorted(rss.items()):
            parts = [f"{name} {mb:.0f} MB" for name, mb in sorted(peaks.items())]
            out.append(f"Peak resident memory during the concurrency-{c} runs: {', '.join(parts)}.\n")
    cross = [w for w in wrk if w["target"] == "httpserver"]
    if cross:
        out.append("Cross-check of the load generator against wrk (same scenario, same machine, same run):\n")
        out.append("| tool | scenario | concurrency | QPS | p50 ms | p99 ms | errors |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for w in cross:
            r = w["result"]
            mine = runs.get((r["scenario"], w["concurrency"]))
            if mine:
                lat = mine["latency_ms"]
                out.append(
                    f"| loadgen | {r['scenario']} | {w['concurrency']} | {fmt_int(mine['qps'])} | "
                    f"{fmt_ms(lat['p50'])} | {fmt_ms(lat['p99'])} | {mine['errors']} |"
                )
            lat = r["latency_ms"]
            out.append(
                f"| wrk ({w.get('threads', 1)} thread) | {r['scenario']} | {w['concurrency']} | {fmt_int(r['qps'])} | "
                f"{fmt_ms(lat['p50'])} | {fmt_ms(lat['p99'])} | {r['errors']} |"
            )
        out.append("")
    out.append("Goals of the issue, checked on these numbers:\n")
    out.extend(goals(runs, rss))
    out.extend(ceiling_goals(runs, wrk))
    out.append("")
    out.extend(cpu_table(runs, all_cpu[SINGLE]))
    if all_runs[FLEET]:
        out.extend(fleet_table(all_runs[FLEET], runs, all_rss[FLEET]))
        out.extend(cpu_table(all_runs[FLEET], all_cpu[FLEET]))
    if seed:
        out.append("Seed (`seed`, as run by perf/run.sh; a no-op when the accounts exist):\n")
        out.append("```")
        out.append(seed.rstrip())
        out.append("```")
        out.append("")
    return "\n".join(out)


def matrix_rows(runs, share):
    """One table row per scenario and concurrency measured, in the matrix's
    order; `share(r, scenario, c)` fills the fifth column (of the ceiling, or
    of the single node)."""
    rows = []
    for scenario in SCENARIOS:
        for c in LEVELS:
            r = runs.get((scenario, c))
            if r is None:
                continue
            lat = r["latency_ms"]
            rows.append(
                f"| {scenario} | {c} | {fmt_int(r['requests'])} | **{fmt_int(r['qps'])}** | {share(r, scenario, c)} | "
                f"{fmt_ms(lat['p50'])} | {fmt_ms(lat['p90'])} | {fmt_ms(lat['p99'])} | {fmt_ms(lat['max'])} | "
                f"{errors_text(r)} |"
            )
    return rows


def fleet_table(fleet, single, rss):
    """The fleet's matrix, each throughput as a share of the single node's."""
    out = [
        "## Through the fleet\n",
        "The same matrix through `./run.sh cluster` on the same machine, after the single node: "
        "HAProxy on 1088, two httpservers, two tcpservers, a Redis Cluster of three masters and "
        "three replicas, three Galera nodes behind HAProxy's MySQL listener. Every process shares "
        "the same cores, so this measures what the fleet costs, not what it adds.\n",
        "| scenario | concurrency | requests | QPS | of single node | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out.extend(matrix_rows(fleet, lambda r, scenario, c: share_text(r, single.get((scenario, c)))))
    out.append("")
    for c, peaks in sorted(rss.items()):
        parts = [f"{name} {mb:.0f} MB" for name, mb in sorted(peaks.items())]
        out.append(f"Peak resident memory during the fleet's concurrency-{c} runs: {', '.join(parts)}.\n")
    out.append("Goals of the scale-out issue, checked on these numbers:\n")
    for scenario in SCENARIOS:
        for c in LEVELS:
            r, base = fleet.get((scenario, c)), single.get((scenario, c))
            if r is None:
                continue
            if scenario in FLEET_SCENARIOS and base and base["qps"]:
                share = r["qps"] / base["qps"]
                ok = r["errors"] == 0 and share >= FLEET_SHARE
                out.append(
                    f"- {'✅' if ok else '❌'} {scenario} at {c}: {r['errors']} errors, {100 * share:.0f} % of the "
                    f"single node (goal: 0 errors, ≥ {100 * FLEET_SHARE:.0f} %)"
                )
            else:
                out.append(f"- {'✅' if r['errors'] == 0 else '❌'} {scenario} at {c}: {r['errors']} errors (goal: 0)")
    out.append("")
    return out


def tier(process):
    """A process's tier: its name without the instance number (tcpserver2 → tcpserver)."""
    return process.rstrip("0123456789")


def cpu_table(runs, cpu):
    """CPU time per answered request, by tier (the instances of a tier summed),
    from the processes' user + system time during each run: the measured cost
    a capacity model divides a target rate by. The load generator's own time is
    not in it."""
    if not cpu:
        return []
    tiers = []
    for seconds in cpu.values():
        for process in seconds:
            if tier(process) not in tiers:
                tiers.append(tier(process))
    out = [
        "CPU time per answered request, µs, by tier (user + system time of its processes during the run, "
        "summed over its instances, divided by the answers):\n",
        "| scenario | concurrency | " + " | ".join(tiers) + " | all |",
        "|---|---:|" + "---:|" * (len(tiers) + 1),
    ]
    for scenario in SCENARIOS:
        for c in LEVELS:
            r, seconds = runs.get((scenario, c)), cpu.get((scenario, c))
            if not r or not seconds or not r["requests"]:
                continue
            per_tier = {t: 0.0 for t in tiers}
            for process, s in seconds.items():
                per_tier[tier(process)] += s
            cells = [f"{1e6 * per_tier[t] / r['requests']:.0f}" for t in tiers]
            total = 1e6 * sum(per_tier.values()) / r["requests"]
            out.append(f"| {scenario} | {c} | " + " | ".join(cells) + f" | {total:.0f} |")
    out.append("")
    return out


def share_text(r, base):
    if not base or not base["qps"]:
        return "–"
    return f"{100 * r['qps'] / base['qps']:.0f} %"


def errors_text(r):
    if not r["errors"]:
        return "0"
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("errors_by_kind", {}).items()))
    return f"{r['errors']} ({kinds})"


def goals(runs, rss):
    lines = []

    def mark(ok):
        return "✅" if ok else "❌"

    for scenario in SCENARIOS:
        low, high = runs.get((scenario, 200)), runs.get((scenario, 2000))
        if low and high:
            share = high["qps"] / low["qps"] if low["qps"] else 0
            ok = high["errors"] == 0 and share >= C2000_SHARE
            lines.append(
                f"- {mark(ok)} {scenario} at 2000: {high['errors']} errors, {100 * share:.1f} % of the "
                f"concurrency-200 throughput (goal: 0 errors, ≥ {100 * C2000_SHARE:.0f} %)"
            )
    for scenario, goal in P99_GOALS_MS.items():
        r = runs.get((scenario, 200))
        if r:
            p99 = r["latency_ms"]["p99"]
            lines.append(f"- {mark(p99 < goal)} {scenario} p99 at 200: {fmt_ms(p99)} ms (goal < {goal} ms)")
    peaks = rss.get(2000, {})
    for name, goal in RSS_GOALS_MB.items():
        if name in peaks:
            lines.append(f"- {mark(peaks[name] < goal)} {name} peak RSS at 2000: {peaks[name]:.0f} MB (goal < {goal} MB)")
    return lines


def share_of(qps, ceiling):
    """`qps` as a percentage of `ceiling`, or a dash when that was not measured."""
    return f"{100 * qps / ceiling:.0f} %" if ceiling else "–"


def ceiling_goals(runs, wrk):
    """The second performance round's goals: scenarios at c=200 as shares of
    the /healthz ceiling measured in the same run."""
    healthz = ceiling_of(wrk, 200, "healthz")
    lines = []
    for scenario, goal in HEALTHZ_SHARE_GOALS.items():
        r = runs.get((scenario, 200))
        if r and healthz:
            share = r["qps"] / healthz
            mark = "✅" if share >= goal else "❌"
            lines.append(
                f"- {mark} {scenario} at 200: {100 * share:.0f} % of the /healthz ceiling "
                f"({fmt_int(healthz)}/s; goal ≥ {100 * goal:.0f} %)"
            )
    return lines


def nice_ceiling(x):
    """The smallest of 1, 2, 4, 8 (times a power of ten) at or above x, so
    that the four grid steps are round numbers."""
    power = 10 ** max(0, len(str(int(x))) - 1)
    for step in (1, 2, 4, 8, 10):
        if step * power >= x:
            return step * power
    return 10 * power


def chart(runs, wrk):
    """Two panels of grouped bars: QPS and p99 per scenario, c=200 and c=2000."""
    width, height = 960, 380
    panel_w, top, bottom, left = 400, 60, 300, 70
    colors = {200: "#2b6cb0", 2000: "#dd6b20"}
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    ceiling = ceiling_of(wrk, 200)

    def panel(x0, title, value, unit, line=None):
        values = [value(runs[(s, c)]) for s in SCENARIOS for c in LEVELS if (s, c) in runs]
        top_value = nice_ceiling(max(values + [1]) * 1.08)
        scale = (bottom - top) / top_value
        svg.append(f'<text x="{x0 + panel_w / 2}" y="30" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>')
        svg.append(f'<line x1="{x0}" y1="{bottom}" x2="{x0 + panel_w}" y2="{bottom}" stroke="#333"/>')
        for i in range(5):
            v = top_value * i / 4
            y = bottom - v * scale
            svg.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + panel_w}" y2="{y:.1f}" stroke="#eee"/>')
            svg.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{v:,.0f}</text>')
        group = panel_w / len(SCENARIOS)
        bar = group * 0.32
        for i, s in enumerate(SCENARIOS):
            gx = x0 + i * group + group * 0.16
            for j, c in enumerate(LEVELS):
                r = runs.get((s, c))
                if r is None:
                    continue
                v = value(r)
                h = v * scale
                x = gx + j * bar
                svg.append(f'<rect x="{x:.1f}" y="{bottom - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="{colors[c]}"/>')
                label = f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
                svg.append(f'<text x="{x + bar / 2 - 1:.1f}" y="{bottom - h - 4:.1f}" text-anchor="middle" font-size="10">{label}</text>')
            svg.append(f'<text x="{gx + bar:.1f}" y="{bottom + 18}" text-anchor="middle">{s}</text>')
        if line and line > top_value:
            # Far above the bars: a note instead of a scale that flattens them.
            svg.append(f'<text x="{x0 + panel_w}" y="{top - 8}" text-anchor="end" fill="#c53030">nginx fixed 200 (the ceiling): {line:,.0f}/s, above the scale</text>')
        elif line:
            y = bottom - line * scale
            svg.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + panel_w}" y2="{y:.1f}" stroke="#c53030" stroke-dasharray="6,4"/>')
            svg.append(f'<text x="{x0 + panel_w}" y="{y - 5:.1f}" text-anchor="end" fill="#c53030">nginx fixed 200: {line:,.0f}/s</text>')
        svg.append(f'<text x="{x0 - 55}" y="{(top + bottom) / 2}" transform="rotate(-90 {x0 - 55} {(top + bottom) / 2})" text-anchor="middle" fill="#555">{unit}</text>')

    panel(left, "Throughput (correct answers / s)", lambda r: r["qps"], "requests / s", ceiling)
    panel(left + panel_w + 90, "p99 latency (ms)", lambda r: r["latency_ms"]["p99"], "ms")
    for j, c in enumerate(LEVELS):
        x = left + j * 160
        svg.append(f'<rect x="{x}" y="{height - 40}" width="14" height="14" fill="{colors[c]}"/>')
        svg.append(f'<text x="{x + 20}" y="{height - 28}">concurrency {c}</text>')
    svg.append("</svg>")
    return "\n".join(svg)


def line(r):
    lat = r["latency_ms"]
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("errors_by_kind", {}).items()))
    return (
        f"  {r['scenario']:<13} c={r['concurrency']:<5} {r['qps']:>9,.0f}/s  "
        f"p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  errors {r['errors']}" + (f" ({kinds})" if kinds else "")
    )


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "line":
        print(line(json.loads(sys.argv[2])))
        return
    if len(sys.argv) != 4 or sys.argv[1] != "table":
        sys.exit("usage: perf/report.py table <results.jsonl> <output prefix> | line '<loadgen json>'")
    runs, wrk, machine, seed, rss, cpu = load(sys.argv[2])
    prefix = sys.argv[3]
    with open(prefix + ".md", "w", encoding="utf-8") as f:
        f.write(table(runs, wrk, machine, seed, rss, cpu))
    single, fleet = runs[SINGLE], runs[FLEET]
    with open(prefix + ".json", "w", encoding="utf-8") as f:
        json.dump(
            {
                "machine": machine,
                "runs": list(single.values()),
                "fleet_runs": list(fleet.values()),
                "wrk": wrk,
                "peak_rss_mb": {str(c): p for c, p in rss[SINGLE].items()},
                "fleet_peak_rss_mb": {str(c): p for c, p in rss[FLEET].items()},
                "cpu_seconds": {
                    system: [{"scenario": sc, "concurrency": c, "seconds": v} for (sc, c), v in per.items()]
                    for system, per in cpu.items()
                },
                "seed": seed,
            },
            f,
            indent=2,
            ensure_ascii=False,
        )
    with open(prefix + ".svg", "w", encoding="utf-8") as f:
        f.write(chart(single, wrk))


if __name__ == "__main__":
    main()
