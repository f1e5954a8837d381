-- POST /models with the seeds' body, as their stress script sends it.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name": "Test Model", "pieces": 100, "theme": "City", "difficulty": "easy", "price_us": 29.99, "year": 2023}'

-- One summary line that bench/spike/run.sh reads: requests, and the failed among them.
done = function(summary, latency, requests)
  local e = summary.errors
  local failed = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("spike: %d %d %d %d %d %d %d\n", summary.requests, failed,
    e.connect, e.read, e.write, e.timeout, e.status))
end
