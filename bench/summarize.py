"""Summarises bench/run.sh's results (a TSV file) as Markdown tables.

    python3 bench/summarize.py RESULTS.tsv

Per scenario: the median of each figure per proxy, then edgeproxy's ratio to nginx, to
HAProxy, to bare Pingora and to the baseline build (when bench/run.sh had BASELINE), and bare
Pingora's to nginx, as min / median / max over rounds
(each ratio taken within one round, so that the machine's drift between rounds cancels out).
"""

import csv
import statistics
import sys
from collections import defaultdict

PROXIES = ("edgeproxy", "nginx", "haproxy", "pingora", "baseline")
NAMES = {
    "edgeproxy": "edgeproxy",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "pingora": "bare Pingora",
    "baseline": "edgeproxy before",
}
# (numerator, denominator) of the ratio rows.
PAIRS = (
    ("edgeproxy", "nginx"),
    ("edgeproxy", "haproxy"),
    ("edgeproxy", "pingora"),
    ("pingora", "nginx"),
    ("edgeproxy", "baseline"),
)

# (column, heading, format) of the load scenarios' tables.
LOAD = (
    ("rps", "req/s", "{:,.0f}"),
    ("p50_us", "p50 ms", "ms"),
    ("p99_us", "p99 ms", "ms"),
    ("p999_us", "p99.9 ms", "ms"),
    ("cpu_s_per_10k", "CPU s / 10k req", "{:.3f}"),
    ("peak_rss_kib", "peak RSS MiB", "mib"),
    ("errors", "errors", "{:,.0f}"),
)
# Figures whose ratios are reported; for the latter two, lower is better.
RATIOS = (("rps", "req/s"), ("cpu_s_per_10k", "CPU/req"), ("p99_us", "p99"))
SSE = (
    ("streams", "streams open", "{:,.0f}"),
    ("kib_per_stream", "KiB per stream", "{:.1f}"),
    ("peak_rss_kib", "RSS with streams MiB", "mib"),
)


def fmt(value, how):
    if how == "ms":
        return f"{value / 1000:.2f}"
    if how == "mib":
        return f"{value / 1024:.1f}"
    return how.format(value)


def number(text):
    return float(text) if text not in ("", None) else None


def table(rows, columns):
    lines = ["| proxy | " + " | ".join(h for _, h, _ in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for proxy in PROXIES:
        if not any(r["proxy"] == proxy for r in rows):
            continue
        cells = []
        for column, _, how in columns:
            values = [number(r[column]) for r in rows if r["proxy"] == proxy]
            values = [v for v in values if v is not None]
            cells.append(fmt(statistics.median(values), how) if values else "–")
        lines.append(f"| {NAMES[proxy]} | " + " | ".join(cells) + " |")
    return lines


def ratios(rows):
    by_round = defaultdict(dict)
    for r in rows:
        by_round[r["round"]][r["proxy"]] = r
    lines = ["| ratio | " + " | ".join(f"{h} (min–median–max)" for _, h in RATIOS) + " |"]
    lines.append("|---" * (len(RATIOS) + 1) + "|")
    for ours_name, other in PAIRS:
        cells = []
        for column, _ in RATIOS:
            found = []
            for runs in by_round.values():
                if ours_name in runs and other in runs:
                    ours, theirs = number(runs[ours_name][column]), number(runs[other][column])
                    if ours is not None and theirs:
                        found.append(ours / theirs)
            cells.append(
                f"{min(found):.2f}–{statistics.median(found):.2f}–{max(found):.2f}"
                if found
                else "–"
            )
        if any(c != "–" for c in cells):
            lines.append(f"| {NAMES[ours_name]} / {NAMES[other]} | " + " | ".join(cells) + " |")
    return lines


def main(path):
    with open(path, newline="", encoding="utf-8") as results:
        rows = list(csv.DictReader(results, delimiter="\t"))
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    out = []
    for scenario in scenarios:
        mine = [r for r in rows if r["scenario"] == scenario]
        out.append(f"### {scenario}\n")
        if scenario == "sse":
            out.extend(table(mine, SSE))
        else:
            out.extend(table(mine, LOAD))
            out.append("")
            out.extend(ratios(mine))
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
