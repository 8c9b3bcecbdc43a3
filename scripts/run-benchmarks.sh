#!/usr/bin/env bash
# Run every benchmark (bench/bench_*.py) with a real OpenSearch node available at SOC_BENCH_OPENSEARCH.
set -uo pipefail
cd "$(dirname "$0")/.."
port=${SOC_BENCH_OPENSEARCH_PORT:-9251}
scripts/opensearch.sh start --port "$port" && export SOC_BENCH_OPENSEARCH="opensearch://127.0.0.1:$port"
rc=0
for script in bench/bench_*.py; do
  [[ -e $script ]] || continue
  echo "== $script"
  .venv/bin/python "$script" || rc=1
done
scripts/opensearch.sh stop --port "$port" || true
exit $rc
