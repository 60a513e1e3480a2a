#!/usr/bin/env bash
# Runs the benchmark workload (shared/bench/WORKLOAD.md) on every backend and each driver's raw
# ceiling, in one sitting, in release mode. Results go to target/bench/ (JSON per backend, text
# per raw ceiling) and a summary to stdout. Needs the services (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh >/dev/null
# The `switchyard` binary with every backend, and the raw ceilings and diagnostics
# (bench/src/bin/), in one build so both see the same features.
cargo build --release --features switchyard/full -p switchyard -p switchyard-bench --bins
out=target/bench
mkdir -p "$out"
bin=target/release/switchyard
pg="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # name, bench args...
  local name=$1; shift
  (cd "$out" && RUST_LOG=warn "../../$bin" bench --json "$@") > "$out/$name.json"
  python3 - "$out/$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['storage']:>8} + {d['queue']:<8}  W1 batch {d['enqueue_batch_jobs_per_s']:>9.0f}/s  "
      f"W1 single {d['enqueue_single_jobs_per_s']:>7.0f}/s  W2 {d['drain_jobs_per_s']:>7.0f}/s  "
      f"W3 p50 {d['latency_p50_ms']:.2f} ms p99 {d['latency_p99_ms']:.2f} ms  (load {d['load_average']})")
PY
}
run sqlite
target/release/sqlite_raw_ceiling | tee "$out/sqlite_raw.txt"
run postgres --storage "$pg"
target/release/postgres_raw_ceiling | grep median | tee "$out/postgres_raw.txt"
run redis --storage redis://127.0.0.1:6379
target/release/redis_raw_ceiling | tail -1 | tee "$out/redis_raw.txt"
target/release/redis_raw_ceiling --batch 1 | tail -1 | sed 's/^/batch 1: /' | tee -a "$out/redis_raw.txt"
target/release/redis_storage_loop | sed 's/^/redis storage loop: /' | tee "$out/redis_storage_loop.txt"
target/release/redis_native_floor | tail -1 | tee "$out/redis_native_floor.txt"
target/release/redis_native_floor --lean | tail -1 | tee -a "$out/redis_native_floor.txt"
target/release/redis_native_floor --lean-lua | tail -1 | tee -a "$out/redis_native_floor.txt"
run postgres_redis --storage "$pg" --queue redis://127.0.0.1:6379
run postgres_sqs --storage "$pg" --queue sqs://127.0.0.1:4577
target/release/sqs_raw_ceiling | tail -1 | tee "$out/sqs_raw.txt"
run postgres_rabbitmq --storage "$pg" --queue "amqp://guest:guest@127.0.0.1:5672/%2f"
target/release/rabbitmq_raw_ceiling | tail -1 | tee "$out/rabbitmq_raw.txt"
target/release/runtime_ceiling | tail -1 | tee "$out/runtime_ceiling.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
