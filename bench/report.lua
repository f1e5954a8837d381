-- wrk script: prints one machine-readable line at the end of a run for bench/run.sh:
-- RESULT requests seconds p50_us p99_us p999_us socket_errors non_2xx_3xx
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %d %d %d %d %d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.timeout, e.status))
end
