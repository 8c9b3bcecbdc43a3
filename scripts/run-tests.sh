#!/usr/bin/env bash
# Run every test. Starts a real single-node OpenSearch for the store contract tests and stops it afterwards.
# In CI (CI=true) a node that does not start fails the run: those tests are never skipped there.
set -uo pipefail
cd "$(dirname "$0")/.."
port=${SOC_TEST_OPENSEARCH_PORT:-9250}
started=0
if command -v java >/dev/null && command -v mvn >/dev/null; then
  # 1 GiB of heap: the differential and contract tests push thousands of documents and hundreds of queries.
  if OPENSEARCH_HEAP=${OPENSEARCH_HEAP:-1g} scripts/opensearch.sh start --port "$port"; then
    started=1
    export SOC_TEST_OPENSEARCH="opensearch://127.0.0.1:$port"
  elif [[ "${CI:-}" == "true" ]]; then
    echo "run-tests: OpenSearch did not start; in CI the OpenSearch tests must run" >&2
    exit 1
  fi
fi
if [[ $started -eq 0 ]]; then
  echo "run-tests: !!! no OpenSearch node: the OpenSearch store tests will be SKIPPED (install Java 17 and Maven) !!!" >&2
fi
.venv/bin/python -m pytest -ra "$@"
rc=$?
if [[ $started -eq 1 ]]; then
  scripts/opensearch.sh stop --port "$port" || true
fi
exit $rc
