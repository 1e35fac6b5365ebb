#!/usr/bin/env bash
# chainrl across "hosts" made of Linux network namespaces.
#
#   tests/netns/multi_host_test.sh PATH/TO/chainrl
#
# Hosts, each a network namespace with its loopback and one veth (eth0) on a bridge; the bridge
# lives in a namespace of its own (the "switch"), so that nothing is added to the root namespace
# and no firewall rule of the machine's sees the traffic:
#
#   L 10.77.0.1   learner rank 0: binds tcp://10.77.0.1:PORT (PORT, PORT+1, PORT+2) with CURVE
#   R 10.77.0.2   learner rank 1 (torchrun-style environment, c10d/Gloo to L)
#   A 10.77.0.11  actor-0 with key host-a
#   B 10.77.0.12  actor-1 with key host-b
#   X 10.77.0.66  intruders: an actor without keys, one with a key the learner does not know,
#                 and raw TCP peers
#   O (loopback only) the same run on one host, for the timing ratio
#
# What is checked:
#   1. a full short run across the namespaces completes and its summary balances (groups trained
#      once each, none lost, none duplicated); both host-a/actor-0 and host-b/actor-1 joined;
#   2. the same run on one host (namespace O, loopback), for "across namespaces X s, on one host
#      Y s, ratio X/Y" (1 and 2 run twice each, alternately);
#   3. a longer run in which B's link is cut for longer than actors.heartbeat_timeout_seconds:
#      B is declared dead and its leases go to A while training goes on; the link comes back,
#      B's actor rejoins and the run completes with nothing lost or duplicated. Meanwhile peers
#      without an authorized key connect from X: they are refused and counted, and receive no
#      weights.
#
# Exit status: 0 passed, 1 failed, 77 skipped (not root, or no network namespaces; with CI=true
# a root that cannot create namespaces fails instead). CHAINRL_NETNS_KEEP=1 keeps the work
# directory (it is always kept, and named, on failure).
set -u -o pipefail

BIN=${1:-}
if [[ -z "$BIN" || ! -x "$BIN" ]]; then
  echo "usage: $0 PATH/TO/chainrl (got '${BIN}')" >&2
  exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

T_START=$(date +%s.%N)
elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.1f", b - a }'; }
log() { printf '[%s s] %s\n' "$(elapsed)" "$*"; }
skip() {
  echo "SKIP: $*"
  exit 77
}

# ---- can this machine make namespaces? -----------------------------------------------------------
if [[ $(id -u) -ne 0 ]]; then skip "needs root to create network namespaces"; fi
if ! PROBE_ERR=$(
  set -e
  ns=crl-$$-probe
  trap 'ip netns del $ns 2>/dev/null' EXIT
  command -v ip >/dev/null || { echo "no 'ip' command (iproute2)"; exit 1; }
  { ip netns add $ns && ip -n $ns link set lo up && ip -n $ns link add br0 type bridge &&
      ip -n $ns link add v0 type veth peer name v1; } 2>&1
); then
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAIL: CI=true and root, but network namespaces cannot be made: $PROBE_ERR"
    exit 1
  fi
  skip "cannot use 'ip netns' here: $PROBE_ERR"
fi

# ---- state and cleanup ---------------------------------------------------------------------------
ID=$$
NS_S=crl-$ID-sw
NS_L=crl-$ID-L
NS_R=crl-$ID-R
NS_A=crl-$ID-A
NS_B=crl-$ID-B
NS_X=crl-$ID-X
NS_O=crl-$ID-O
NAMESPACES=()
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/chainrl-netns-$ID.XXXXXX")
FAILED=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid p ns
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  # Anything else still inside this run's namespaces was started by this script.
  for ns in "${NAMESPACES[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  wait 2>/dev/null
  if [[ $rc -ne 0 && $rc -ne 77 ]] || [[ $FAILED -ne 0 || "${CHAINRL_NETNS_KEEP:-}" == 1 ]]; then
    echo "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

fail() {
  FAILED=1
  echo "FAIL: $*"
  exit 1
}
check() {  # check DESCRIPTION COMMAND...: runs the command; a non-zero status fails the test
  local what=$1
  shift
  if "$@"; then log "ok: $what"; else fail "$what"; fi
}

# Tail of a log, for failure messages.
show() {
  local f
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    echo "---- ${f#"$WORK"/} (last 25 lines)"
    tail -n 25 "$f"
  done
}

# Top-level value of KEY in a summary.json (written by the learner with one space of indent).
jget() { sed -n "s/^ \"$2\": \\(.*\\),\$/\\1/p; s/^ \"$2\": \\(.*\\)\$/\\1/p" "$1" | head -n 1; }
# "step" of RUN/progress.json, or -1.
progress_step() {
  local s
  s=$(grep -o '"step":[0-9]*' "$1/progress.json" 2>/dev/null | head -n 1 | cut -d: -f2)
  echo "${s:--1}"
}
progress_actors() {
  local s
  s=$(grep -o '"actors":[0-9]*' "$1/progress.json" 2>/dev/null | head -n 1 | cut -d: -f2)
  echo "${s:--1}"
}
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }
# metric NS LOG PATTERN: the sum of the samples whose name and labels match PATTERN (an awk
# regular expression), served on /metrics by the process whose log is LOG, read inside its
# namespace (metrics bind 127.0.0.1 there); -1 if unreadable or absent.
metric() {
  local port
  port=$(grep -o 'metrics: serving http://127.0.0.1:[0-9]*' "$2" | head -n 1 | grep -o '[0-9]*$')
  [[ -n $port ]] || { echo -1; return; }
  ip netns exec "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port || exit 1
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    timeout 3 cat <&3" 2>/dev/null |
    awk -v n="$3" 'BEGIN { s = -1 } $1 ~ n { s = (s < 0 ? 0 : s) + $NF } END { printf "%d", s }'
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Waits up to SECONDS for process PID (a child of this shell) to end; its status in WAITED_RC.
wait_pid() {
  local pid=$1 limit=$2 t0
  t0=$(now)
  while kill -0 "$pid" 2>/dev/null; do
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      WAITED_RC=124
      return 1
    fi
    sleep 0.1
  done
  wait "$pid"
  WAITED_RC=$?
  return 0
}
# Waits up to SECONDS for COMMAND... to succeed.
wait_for() {
  local limit=$1 t0
  shift
  t0=$(now)
  until "$@"; do
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then return 1; fi
    sleep 0.1
  done
}
# Interrupts an actor (Ctrl-C: it leaves cleanly) and waits for it.
stop_actor() {
  local pid=$1
  kill -INT "$pid" 2>/dev/null
  wait_pid "$pid" 15 || { kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
}

# ---- the network ---------------------------------------------------------------------------------
# mkhost NS PORT_NAME ADDRESS: a namespace with loopback up and eth0 = ADDRESS/24 on the switch.
mkhost() {
  local ns=$1 port=$2 addr=$3
  ip netns add "$ns" || return 1
  NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up || return 1
  [[ -z "$port" ]] && return 0
  ip link add eth0 netns "$ns" type veth peer name "$port" netns "$NS_S" || return 1
  ip -n "$NS_S" link set "$port" master br0 up || return 1
  ip -n "$ns" addr add "$addr/24" dev eth0 || return 1
  ip -n "$ns" link set eth0 up || return 1
}

make_network() {
  ip netns add "$NS_S" || return 1
  NAMESPACES+=("$NS_S")
  ip -n "$NS_S" link set lo up || return 1
  ip -n "$NS_S" link add br0 type bridge || return 1
  ip -n "$NS_S" link set br0 up || return 1
  mkhost "$NS_L" pL 10.77.0.1 &&
    mkhost "$NS_R" pR 10.77.0.2 &&
    mkhost "$NS_A" pA 10.77.0.11 &&
    mkhost "$NS_B" pB 10.77.0.12 &&
    mkhost "$NS_X" pX 10.77.0.66 &&
    mkhost "$NS_O" "" ""
}

log "work directory $WORK, namespaces crl-$ID-*"
if ! make_network; then
  fail "could not build the namespaces and their bridge"
fi
L_ADDR=10.77.0.1
PORT=5555          # work; 5556 trajectories, 5557 weights (inside L)
MASTER_PORT=29500  # c10d store of the learner ranks (inside L)
for ns in "$NS_R" "$NS_A" "$NS_B" "$NS_X"; do
  # Nothing listens yet: 'connection refused' within 2 s proves the path (a timeout does not).
  ip netns exec "$ns" timeout 3 bash -c "exec 3<>/dev/tcp/$L_ADDR/1" 2>/dev/null
  [[ $? -eq 1 ]] || fail "$ns cannot reach $L_ADDR over the bridge"
done
log "ok: 7 namespaces (switch, L, R, A, B, X, O); R, A, B and X reach L over the bridge"

# ---- model, keys, configuration ------------------------------------------------------------------
"$BIN" init-model --arch qwen2 --layers 1 --hidden 32 --heads 2 --kv-heads 1 --intermediate 64 \
  --max-position 512 --tokenizer bytes --tie-embeddings --out "$WORK/model" >"$WORK/init-model.log" 2>&1 ||
  { show "$WORK/init-model.log"; fail "chainrl init-model"; }
KEYS=$WORK/keys
mkdir -p "$KEYS"
for name in learner host-a host-b intruder; do
  "$BIN" keys "$name" --dir "$KEYS" >>"$WORK/keys.log" 2>&1 || { show "$WORK/keys.log"; fail "chainrl keys $name"; }
done
cat "$KEYS/host-a.pub" "$KEYS/host-b.pub" >"$KEYS/authorized_actors"  # not the intruder's
log "ok: model and keys (learner, host-a, host-b; intruder not authorized)"

# The run's configuration, shared by every process. No keys in it: each process gets its own on
# its command line, as on separate machines (so that a keyless actor really has none).
HB_INTERVAL=0.2
HB_TIMEOUT=1.5
CONFIG=$WORK/run.toml
cat >"$CONFIG" <<EOF
[run]
name = "netns"
seed = 3
total_steps = 20
log_level = "info"
[model]
path = "$WORK/model"
[model.init]
enabled = false
[data]
task = "arithmetic"
task_min_size = 1
task_max_size = 1
num_train_examples = 2000
num_eval_examples = 16
[rollout]
group_size = 8
prompts_per_step = 4
max_new_tokens = 64
[actors]
credits = 2
heartbeat_interval_seconds = $HB_INTERVAL
heartbeat_timeout_seconds = $HB_TIMEOUT
[learner]
threads = 1
# Small: the random policy keeps generating long answers, so every step costs about the same.
lr = 1e-5
[algorithm]
name = "grpo"
loss_agg_mode = "token-mean"
kl_coef = 0.0
[distributed]
backend = "gloo"
timeout_seconds = 60
[metrics]
progress_interval_seconds = 0
[[rewards]]
name = "short"
kind = "length"
options = { target_tokens = 40, max_tokens = 64 }
EOF
PER_STEP=4
"$BIN" train "$CONFIG" --check >"$WORK/check.log" 2>&1 || { show "$WORK/check.log"; fail "the run's configuration is invalid"; }

LEARNER_SETS=(--set "security.learner_secret_key_file=\"$KEYS/learner.key\""
  --set "security.authorized_keys_file=\"$KEYS/authorized_actors\"")
actor_sets() {  # actor_sets KEYNAME
  echo "security.actor_secret_key_file=\"$KEYS/$1.key\""
  echo "security.learner_public_key=\"$KEYS/learner.pub\""
}

# start_cluster TAG MODE STEPS: learner ranks 0 and 1, then, once rank 0 serves, actors 0 (host-a)
# and 1 (host-b). MODE netns: each on its own host; MODE onehost: all in namespace O on loopback.
# Sets RUN, P_L0, P_L1, P_A, P_B, T0 (when the ranks started).
#
# The actors start only once the learner serves: an actor that connects earlier may reach the
# sockets that the learner binds for a moment at start-up to check learner.bind, and lose its
# first messages to them (its join, or its weights subscription, which leaves it waiting for
# weights for ever). That is a defect of chainrl's, not what this test is about.
start_cluster() {
  local tag=$1 mode=$2 steps=$3
  local nsL nsR nsA nsB addr ifname local_ws
  if [[ $mode == netns ]]; then
    nsL=$NS_L nsR=$NS_R nsA=$NS_A nsB=$NS_B addr=$L_ADDR ifname=eth0 local_ws=1
  else
    nsL=$NS_O nsR=$NS_O nsA=$NS_O nsB=$NS_O addr=127.0.0.1 ifname="" local_ws=2
  fi
  RUN=$WORK/$tag
  local common=(--run-dir "$RUN" --set "run.total_steps=$steps" --set "learner.bind=\"tcp://$addr:$PORT\"")
  local a_sets=() b_sets=() line
  while read -r line; do a_sets+=(--set "$line"); done < <(actor_sets host-a)
  while read -r line; do b_sets+=(--set "$line"); done < <(actor_sets host-b)
  T0=$(now)
  local r
  for r in 0 1; do
    local ns=$nsL
    [[ $r -eq 1 ]] && ns=$nsR
    # torchrun's environment. Gloo is told which interface carries the ranks' traffic: without
    # GLOO_SOCKET_IFNAME it takes the address of the machine's host name, which every namespace
    # shares (often 127.0.0.1 or 127.0.1.1 in /etc/hosts), and the ranks never meet.
    ip netns exec "$ns" env RANK=$r LOCAL_RANK="$((local_ws == 1 ? 0 : r))" \
      WORLD_SIZE=2 LOCAL_WORLD_SIZE=$local_ws MASTER_ADDR=$addr MASTER_PORT=$MASTER_PORT \
      ${ifname:+GLOO_SOCKET_IFNAME=$ifname} \
      "$BIN" learner "$CONFIG" "${common[@]}" "${LEARNER_SETS[@]}" >"$RUN-rank$r.log" 2>&1 &
    PIDS+=("$!")
    [[ $r -eq 0 ]] && P_L0=$! || P_L1=$!
  done
  serving() { grep -qs "serving work on" "$RUN-rank0.log" || ! kill -0 "$P_L0" 2>/dev/null; }
  if ! wait_for 120 serving || ! kill -0 "$P_L0" 2>/dev/null; then
    show "$RUN-rank0.log" "$RUN-rank1.log"
    fail "${RUN##*/}: learner rank 0 did not start serving"
  fi
  ip netns exec "$nsA" "$BIN" actor "$CONFIG" --connect "tcp://$addr:$PORT" --index 0 \
    "${a_sets[@]}" >"$RUN-host-a.log" 2>&1 &
  P_A=$!
  PIDS+=("$P_A")
  ip netns exec "$nsB" "$BIN" actor "$CONFIG" --connect "tcp://$addr:$PORT" --index 1 \
    "${b_sets[@]}" >"$RUN-host-b.log" 2>&1 &
  P_B=$!
  PIDS+=("$P_B")
}

# finish_cluster LIMIT: waits for both ranks, then stops the actors. Sets WALL (the ranks' start to
# rank 0's exit), RC0, RC1.
finish_cluster() {
  local limit=$1
  if ! wait_pid "$P_L0" "$limit"; then
    show "$RUN-rank0.log" "$RUN-rank1.log" "$RUN-host-a.log" "$RUN-host-b.log"
    fail "learner rank 0 of ${RUN##*/} did not finish within $limit s"
  fi
  RC0=$WAITED_RC
  WALL=$(since "$T0")
  wait_pid "$P_L1" 60 || { show "$RUN-rank1.log"; fail "learner rank 1 did not finish after rank 0"; }
  RC1=$WAITED_RC
  stop_actor "$P_A"
  stop_actor "$P_B"
  if [[ $RC0 -ne 0 || $RC1 -ne 0 ]]; then
    show "$RUN-rank0.log" "$RUN-rank1.log" "$RUN-host-a.log" "$RUN-host-b.log"
    fail "${RUN##*/}: learner ranks exited with $RC0 and $RC1"
  fi
}

# expect_balanced RUN STEPS: summary.json of a completed run whose books balance.
expect_balanced() {
  local run=$1 steps=$2 s=$1/summary.json
  [[ -f $s ]] || { show "$run-rank0.log"; fail "${run##*/}: no summary.json"; }
  local got bad=""
  [[ $(jget "$s" completed) == true ]] || bad+=" completed=$(jget "$s" completed)"
  [[ $(jget "$s" steps) == "$steps" ]] || bad+=" steps=$(jget "$s" steps) (want $steps)"
  got=$(jget "$s" groups_trained)
  [[ $got == $((steps * PER_STEP)) ]] || bad+=" groups_trained=$got (want $((steps * PER_STEP)))"
  [[ $(jget "$s" groups_duplicated) == 0 ]] || bad+=" groups_duplicated=$(jget "$s" groups_duplicated)"
  [[ $(jget "$s" groups_lost) == 0 ]] || bad+=" groups_lost=$(jget "$s" groups_lost)"
  local accepted buffered dispatched tokens
  accepted=$(jget "$s" groups_accepted) buffered=$(jget "$s" groups_buffered)
  dispatched=$(jget "$s" groups_dispatched) tokens=$(jget "$s" tokens_trained)
  ((accepted >= got + buffered)) || bad+=" groups_accepted=$accepted < trained+buffered"
  ((dispatched >= accepted)) || bad+=" groups_dispatched=$dispatched < accepted"
  ((tokens > 0)) || bad+=" tokens_trained=$tokens"
  [[ $(jget "$s" learner_ranks) == 2 ]] || bad+=" learner_ranks=$(jget "$s" learner_ranks)"
  [[ $(jget "$s" ranks_parameters_identical) == true ]] || bad+=" ranks_parameters_identical=false"
  if [[ -n $bad ]]; then
    show "$run-rank0.log"
    fail "${run##*/}: summary does not balance:$bad"
  fi
  log "ok: ${run##*/} summary balances: $steps steps, $got groups trained, $accepted accepted," \
    "$dispatched dispatched, 0 lost, 0 duplicated, ranks identical"
}

# ---- 1 and 2. a short run across the namespaces, and the same run on one host ----------------------
# Each twice, alternately, for the timing ratio (the faster of the two counts: the first runs also
# pay for reading the binary and its libraries); every run is checked alike.
STEPS=20
cat "$BIN" >/dev/null  # into the page cache
check_run() {  # check_run MODE: the checks of a run started by start_cluster
  local run=$RUN mode=$1 a=A b=B r=R
  [[ $mode == onehost ]] && a=O b=O r=O
  expect_balanced "$run" $STEPS
  local addr=$L_ADDR
  [[ $mode == onehost ]] && addr=127.0.0.1
  check "rank 0 served CURVE on $addr:$PORT" \
    grep -qE "serving work on tcp://(\[::ffff:)?${addr//./\\.}\]?:$PORT, .*\(CURVE; 2 authorized keys\)" "$run-rank0.log"
  check "host-a/actor-0 joined (from namespace $a)" grep -q "host-a/actor-0 joined from" "$run-rank0.log"
  check "host-b/actor-1 joined (from namespace $b)" grep -q "host-b/actor-1 joined from" "$run-rank0.log"
  check "rank 1 (namespace $r) took every update, parameters identical" \
    grep -q "$STEPS updates taken here; parameters identical" "$run-rank1.log"
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }
WALL_NS=1e9 WALL_ONE=1e9 LEARNER_WALL_NS=1e9 LEARNER_WALL_ONE=1e9 WALLS_NS="" WALLS_ONE=""
# One timed run of `kind` (netns or onehost) named `name`; sets WALL (the processes') and
# LEARNER_WALL (the learner's own wall_seconds).
timed_run() {
  start_cluster "$2" "$1" $STEPS
  finish_cluster 150
  check_run "$1"
  LEARNER_WALL=$(jget "$RUN/summary.json" wall_seconds | awk '{ printf "%.2f", $1 }')
}
for rep in 1 2; do
  log "run 1.$rep: learner rank 0 in L (tcp://$L_ADDR:$PORT, CURVE), rank 1 in R, actors in A and B; $STEPS steps"
  timed_run netns "multi-$rep"
  WALL_NS=$(min "$WALL_NS" "$WALL") WALLS_NS+="${WALLS_NS:+, }$WALL"
  LEARNER_WALL_NS=$(min "$LEARNER_WALL_NS" "$LEARNER_WALL")
  log "run 2.$rep: the same processes and configuration on one host (namespace O, loopback)"
  timed_run onehost "onehost-$rep"
  WALL_ONE=$(min "$WALL_ONE" "$WALL") WALLS_ONE+="${WALLS_ONE:+, }$WALL"
  LEARNER_WALL_ONE=$(min "$LEARNER_WALL_ONE" "$LEARNER_WALL")
done
RATIO=$(awk -v x="$WALL_NS" -v y="$WALL_ONE" 'BEGIN { printf "%.2f", x / y }')
log "wall time across namespaces $WALL_NS s, on one host $WALL_ONE s, ratio $RATIO" \
  "(runs: $WALLS_NS s across namespaces; $WALLS_ONE s on one host)"

# ---- 3. B's link cut mid-run; intruders from X ---------------------------------------------------
# The cut outlasts the heartbeat timeout (B is declared dead after 1.5 s) and also what B's actor
# may spend inside a weights fetch that the cut interrupts (10 s without a chunk) plus its silence
# limit (3 heartbeat timeouts): so B's actor always gives up its old connections during the cut and
# joins anew when the link is back. (A shorter cut that ends while B's actor still waits for a chunk
# lets it carry on over its old TCP connections: the learner then takes it back silently, with no
# "joined" line, as it logged no death either, only the revoked leases.)
CUT_SECONDS=12
# Long enough that, after the cut and B's return, the run still has steps left: the time per step
# gives the steps for ~35 s of training (the cut, B's return and steps with B again take about
# 20 s here). The time per step is that of the last run's steps from its second step event on (its
# steady state: a whole run's wall time per step includes the learner's start, which once made the
# estimate 4x too long and run 3 end during the cut), or the whole run's when there are too few.
PER_STEP_S=$(awk -v w="$LEARNER_WALL_NS" -v n=$STEPS 'BEGIN { printf "%.4f", w / n }')
STEADY_S=$(grep '"event":"step"' "$RUN/events.jsonl" 2>/dev/null |
  sed -n 's/.*"ts":"[0-9-]*T\([0-9]*\):\([0-9]*\):\([0-9.]*\)Z".*/\1 \2 \3/p' |
  awk '{ t = $1 * 3600 + $2 * 60 + $3; if (NR == 2) a = t; b = t; n = NR }
       END { if (n >= 4 && b > a) printf "%.4f", (b - a) / (n - 2) }')
[[ -n $STEADY_S ]] && PER_STEP_S=$(min "$PER_STEP_S" "$STEADY_S")
STEPS3=$(awk -v p="$PER_STEP_S" 'BEGIN { n = int(35 / p); if (n < 150) n = 150; if (n > 2000) n = 2000; print n }')
log "run 3: $STEPS3 steps; B's link cut for $CUT_SECONDS s (heartbeat timeout $HB_TIMEOUT s); intruders from X"
start_cluster cut netns "$STEPS3"
RUN3=$RUN

# Intruders, from namespace X: an actor without keys, one with a key the learner does not know,
# and raw TCP peers sending bytes that are not ZeroMQ.
ip netns exec "$NS_X" "$BIN" actor "$CONFIG" --connect "tcp://$L_ADDR:$PORT" --index 7 \
  >"$RUN3-keyless.log" 2>&1 &
P_KEYLESS=$!
PIDS+=("$P_KEYLESS")
ip netns exec "$NS_X" "$BIN" actor "$CONFIG" --connect "tcp://$L_ADDR:$PORT" --index 8 \
  --set "security.actor_secret_key_file=\"$KEYS/intruder.key\"" \
  --set "security.learner_public_key=\"$KEYS/learner.pub\"" >"$RUN3-unknown-key.log" 2>&1 &
P_UNKNOWN=$!
PIDS+=("$P_UNKNOWN")
RAW_BYTES=0
for p in $PORT $((PORT + 1)) $((PORT + 2)); do
  # Sends an HTTP request and reads for 2 s whatever comes back.
  n=$(ip netns exec "$NS_X" bash -c "exec 3<>/dev/tcp/$L_ADDR/$p || exit 1
    printf 'GET /weights HTTP/1.0\r\n\r\n' >&3
    timeout 2 cat <&3 | wc -c" 2>/dev/null)
  [[ -n $n ]] || fail "raw TCP peer in X could not connect to $L_ADDR:$p"
  log "raw TCP peer X -> $L_ADDR:$p received $n bytes"
  RAW_BYTES=$((RAW_BYTES + n))
done

reached_step() { (($(progress_step "$1") >= $2)); }
wait_for 60 reached_step "$RUN3" 3 ||
  { show "$RUN3-rank0.log"; fail "run 3 did not reach step 3"; }
STEP_CUT=$(progress_step "$RUN3")
B_JOINS_BEFORE=$(count "host-b/actor-1 joined from" "$RUN3-rank0.log")
ip -n "$NS_S" link set pB down || fail "could not take B's link down"
T_CUT=$(now)
log "B's link (switch port pB) down at step $STEP_CUT"
wait_for 30 grep -q "revoked from host-b/actor-1" "$RUN3-rank0.log" ||
  { show "$RUN3-rank0.log"; fail "B's leases were not revoked after its link went down"; }
T_DEAD=$(since "$T_CUT")
log "ok: learner declared host-b/actor-1 dead after ${T_DEAD} s: $(count "revoked from host-b/actor-1" "$RUN3-rank0.log") lease(s) revoked"
sleep "$(awk -v c="$CUT_SECONDS" -v d="$T_DEAD" 'BEGIN { r = c - d; print (r > 0 ? r : 0) }')"
STEP_UP=$(progress_step "$RUN3")
ACTORS_DURING=$(progress_actors "$RUN3")
ip -n "$NS_S" link set pB up || fail "could not bring B's link back"
T_UP=$(now)
log "B's link up again after $(awk -v a="$T_CUT" -v b="$T_UP" 'BEGIN { printf "%.1f", b - a }') s, at step $STEP_UP (actors alive: $ACTORS_DURING)"
((STEP_UP > STEP_CUT)) || fail "training stalled while B was cut off (step $STEP_CUT -> $STEP_UP)"
log "ok: training went on with A alone: steps $STEP_CUT -> $STEP_UP"
((ACTORS_DURING == 1)) || log "note: progress.json said $ACTORS_DURING actors alive during the cut"
kill -0 "$P_L0" 2>/dev/null || fail "run 3 ended while B was cut off (too few steps: $STEPS3)"
rejoined() { (($(count "host-b/actor-1 joined from" "$RUN3-rank0.log") > B_JOINS_BEFORE)); }
wait_for 60 rejoined || { show "$RUN3-rank0.log" "$RUN3-host-b.log"; fail "host-b/actor-1 did not rejoin within 60 s of its link's return"; }
T_REJOIN=$(since "$T_UP")
STEP_REJOIN=$(progress_step "$RUN3")
log "ok: host-b/actor-1 rejoined $T_REJOIN s after its link came back, at step $STEP_REJOIN of $STEPS3"
((STEP_REJOIN < STEPS3)) || fail "B rejoined only after the run's last step"
grep "no word from the learner" "$RUN3-host-b.log" | sed 's/^.*\] /    host-b actor: /'
# B works again: its actor generates for the learner's new leases.
TOKENS_REJOIN=$(metric "$NS_B" "$RUN3-host-b.log" "^chainrl_rollout_tokens_total")
b_generates() {
  (($(metric "$NS_B" "$RUN3-host-b.log" "^chainrl_rollout_tokens_total") > TOKENS_REJOIN))
}
if wait_for 20 b_generates; then
  log "ok: B's actor generates again (rollout tokens $TOKENS_REJOIN -> $(metric "$NS_B" "$RUN3-host-b.log" "^chainrl_rollout_tokens_total"))"
else
  kill -0 "$P_L0" 2>/dev/null || fail "run 3 ended before B's actor generated again"
  fail "B's actor generated nothing in 20 s after rejoining (rollout tokens stay $TOKENS_REJOIN)"
fi
# The learner's refusal counters, by reason, while it runs.
REFUSED_UNKNOWN_KEY=$(metric "$NS_L" "$RUN3-rank0.log" '^chainrl_peers_refused_total[{].*reason="unknown_key"')
REFUSED_HANDSHAKE=$(metric "$NS_L" "$RUN3-rank0.log" '^chainrl_peers_refused_total[{].*reason="handshake"')
finish_cluster 240
expect_balanced "$RUN3" "$STEPS3"
S3=$RUN3/summary.json
DEAD=$(jget "$S3" actors_declared_dead)
REASSIGNED=$(jget "$S3" leases_reassigned)
REFUSED=$(jget "$S3" peers_refused)
((DEAD >= 1)) || fail "summary: actors_declared_dead=$DEAD"
((REASSIGNED >= 1)) || fail "summary: leases_reassigned=$REASSIGNED"
log "ok: summary: actors_declared_dead $DEAD, leases_reassigned $REASSIGNED, peers_refused $REFUSED"
grep "host-b/actor-1" "$RUN3-rank0.log" | grep -E "joined|restarted|left" | sed 's/^/    /'

# Intruders: refused, counted, and given nothing.
((REFUSED > 0)) || { show "$RUN3-rank0.log"; fail "summary: peers_refused=$REFUSED"; }
check "learner logged refused peers" grep -q "refused a peer" "$RUN3-rank0.log"
grep -o "refused a peer ([a-z_]*" "$RUN3-rank0.log" | sort | uniq -c | sed 's/^ */    logged: /'
for reason in unknown_key handshake; do
  grep "refused a peer ($reason" "$RUN3-rank0.log" | head -n 1 | sed 's/^.*refused a peer/    e.g. refused a peer/' | cut -c1-220
done
((REFUSED_UNKNOWN_KEY > 0)) || fail "the learner counted no refusal for an unknown key (the intruder key's actor)"
((REFUSED_HANDSHAKE > 0)) || fail "the learner counted no failed handshake (the keyless actor, raw TCP)"
log "ok: chainrl_peers_refused_total: unknown_key $REFUSED_UNKNOWN_KEY, handshake $REFUSED_HANDSHAKE (while B rejoined); summary peers_refused $REFUSED"
# Checked before they are stopped: an actor interrupted while it waits for weights logs "policy
# version -1 loaded; generating" on its way out.
for who in keyless unknown-key; do
  f=$RUN3-$who.log
  if grep -q "policy version .* loaded\|generating\|joined" "$f"; then
    show "$f"
    fail "the $who actor in X received weights"
  fi
  log "ok: the $who actor in X never received weights ($(grep -c . "$f") log lines, last: $(tail -n 1 "$f" | cut -c1-140))"
done
stop_actor "$P_KEYLESS"
stop_actor "$P_UNKNOWN"
# A CURVE server sends at most its ZMTP greeting (64 bytes; often only its 10-byte signature) and
# then nothing to a peer that is not ZeroMQ.
((RAW_BYTES <= 3 * 64)) || fail "raw TCP peers received $RAW_BYTES bytes (more than ZMTP greetings)"
log "ok: raw TCP peers received $RAW_BYTES bytes in all (at most the 64-byte ZMTP greeting each)"

# ---- 4. figures ----------------------------------------------------------------------------------
echo
echo "figures ($STEPS steps, 2 learner ranks, 2 actors, $(nproc) cores; the faster of 2 runs each):"
echo "  wall time across namespaces $WALL_NS s, on one host $WALL_ONE s, ratio $RATIO" \
  "(runs: $WALLS_NS s / $WALLS_ONE s, from the ranks' start to rank 0's exit)"
echo "  the learner's own wall_seconds (summary.json): across namespaces $LEARNER_WALL_NS s, on one" \
  "host $LEARNER_WALL_ONE s, ratio $(awk -v x="$LEARNER_WALL_NS" -v y="$LEARNER_WALL_ONE" 'BEGIN { printf "%.2f", x / y }')"
echo "  link cut for $CUT_SECONDS s at step $STEP_CUT: B declared dead ${T_DEAD} s after the cut" \
  "(heartbeat timeout $HB_TIMEOUT s), A alone trained steps $STEP_CUT..$STEP_UP, B rejoined" \
  "$T_REJOIN s after the link came back; run 3 ($STEPS3 steps) took $WALL s"
echo "PASS ($(elapsed | tr -d ' ') s)"
