"""Splits a proxy's CPU time, sampled by perf, into the pieces of work it went to.

    perf record -F 1999 --call-graph dwarf,16384 -p PID -o perf.data -- sleep 8
    perf script -i perf.data -F comm,tid,ip,sym,dso | python3 bench/attribute.py - [US_PER_REQ]

Run the `perf record` while wrk drives the proxy (bench/README.md gives the whole recipe).
A kernel sample counts as kernel time. A user-space sample goes to the innermost frame of its
stack that names a known piece of work (so an allocation counts for whoever allocated).
With US_PER_REQ, the proxy's CPU microseconds per request measured beside the profile, each
share is also given in microseconds per request.
"""

import re
import sys
from collections import Counter

# Looked for from the innermost frame outwards; within a frame, the first match wins.
CATEGORIES = (
    ("edgeproxy's own code (phases, connection wrapper)", r"^<?edgeproxy::"),
    ("Pingora: read and parse the client's request", r"v1::server::HttpSession::read_request"),
    ("Pingora: read and parse the backend's response", r"read_resp_header_parts"),
    (
        "Pingora: write the response to the client",
        r"response_duplex_vec|write_response_header|prepare_response_header|write_body_buf",
    ),
    (
        "Pingora: upstream connection pool",
        r"reused_stream|release_http_session|pingora_pool|get_http_session|reuse_hash",
    ),
    ("Pingora: I/O timers", r"pingora_timeout"),
    ("http crate: header maps", r"^<?http::header"),
    (
        "Pingora: request/response relay between two futures",
        r"tokio::sync::|proxy_1to1|proxy_handle_downstream|proxy_handle_upstream"
        r"|process_upstream_tasks|write_response_tasks|h1_response_filter",
    ),
    ("Pingora: other session and proxy code", r"pingora_"),
    ("Tokio: scheduler and I/O readiness", r"tokio::"),
)
COMPILED = tuple((name, re.compile(pattern)) for name, pattern in CATEGORIES)
FRAME = re.compile(r"\s+[0-9a-f]+ (.*) \((.*)\)$")


def attribute(frames):
    """The category of one sample, from its frames (innermost first) as (symbol, dso)."""
    if not frames:
        return None
    if "[kernel" in frames[0][1]:
        return "kernel"
    for symbol, _ in frames:
        for name, pattern in COMPILED:
            if pattern.search(symbol):
                return name
    return "other user space (libc, allocator outside a known caller)"


def main(source, us_per_request):
    counts = Counter()
    frames = []
    for line in source:
        if not line.startswith(("\t", " ")):
            counts[attribute(frames)] += 1
            frames = []
            continue
        match = FRAME.match(line.rstrip("\n"))
        if match:
            frames.append((match.group(1), match.group(2)))
    counts[attribute(frames)] += 1
    del counts[None]
    total = sum(counts.values())
    if not total:
        sys.exit("attribute.py: no samples in the input; is it `perf script` output?")
    header = "| where | share of CPU |" + (" µs per request |" if us_per_request else "")
    print(header)
    print("|---|---|" + ("---|" if us_per_request else ""))
    for name, count in counts.most_common():
        share = count / total
        cells = f"| {name} | {share:.1%} |"
        if us_per_request:
            cells += f" {share * us_per_request:.2f} |"
        print(cells)
    print(f"\n{total} samples")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    path = sys.argv[1]
    per_request = float(sys.argv[2]) if len(sys.argv) == 3 else None
    with sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace") as f:
        main(f, per_request)
