#!/usr/bin/env bash
# scripts/slurm/chainrl.sbatch on a real Slurm cluster started on this machine: MUNGE, slurmctld
# and slurmd (three slurmd, nodes n1-n3, when this Slurm runs several on one host; else one) in a
# temporary directory with their own socket, ports, state and spool. Jobs submitted with
# `sbatch --wait` train the shortened quickstart (the overrides of TrainProcessTest's
# QuickstartConfigRunsShortened): the learner on the first node(s), actors on the others (or on
# the one node). Each job must succeed, and its RUN_DIR/summary.json must balance (3 steps of 4
# groups, none lost or duplicated) with one step event per update; every actor must have
# connected and left cleanly, and each learner rank must have run.
#
# Usage: tests/slurm/slurm_cluster_test.sh [BUILD_DIR]
#   BUILD_DIR: where bin/chainrl is (default: $CHAINRL_BUILD_DIR, else ./build of the checkout).
#   CHAINRL_SLURM_TEST_KEEP=1 keeps the temporary directory (its path is printed).
# Exit 0: passed; 1: failed; 77: skipped (not root, or Slurm / MUNGE not installed; under CI=true
# a missing install fails instead, since scripts/setup.sh installs slurm-wlm and munge).
# Everything it starts is stopped, and its directory removed, on every exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-${CHAINRL_BUILD_DIR:-$root/build}}"
sbatch_script="$root/scripts/slurm/chainrl.sbatch"
t_start=$SECONDS

say() { echo "slurm test [$((SECONDS - t_start)) s]: $*"; }
fail() {
  echo "FAIL: $*"
  exit 1
}
skip() {
  echo "SKIP: $*"
  exit 77
}

# ---- prerequisites -----------------------------------------------------------------------------
PATH="$PATH:/usr/sbin:/sbin"  # the daemons live there; a minimal PATH must not read as "missing"
if [ "$(id -u)" -ne 0 ]; then
  skip "needs root (the test's slurmd runs its jobs as root, SlurmUser=root)"
fi
missing=()
for tool in munged munge slurmctld slurmd sbatch srun scontrol squeue sinfo scancel python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  msg="not installed: ${missing[*]} (Debian packages slurm-wlm, munge and python3; scripts/setup.sh installs them)"
  if [ "${CI:-}" = "true" ]; then fail "$msg"; fi
  skip "$msg"
fi
[ -d "$build" ] || fail "$build: no such build directory (pass it as the first argument)"

# ---- teardown, on every exit -------------------------------------------------------------------
tmp=""
pids=()      # daemons we started, stopped in reverse order
ctld_pid=""  # slurmctld, while it runs
stop_pid() {  # stop_pid PID: SIGTERM, then SIGKILL after 10 s
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# Processes of this test that outlive their daemons: slurmstepd (it keeps its log and spool files
# under $tmp open) and chainrl (run from $tmp/bin).
leftovers() {
  local p exe
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [ "$p" = "$$" ] && continue
    exe="$(readlink "/proc/$p/exe" 2>/dev/null)" || continue
    case "$exe" in
      "$tmp"/bin/*) echo "$p" ;;
      */slurmstepd)
        if find "/proc/$p/fd" -lname "$tmp/*" -print -quit 2>/dev/null | grep -q .; then echo "$p"; fi
        ;;
    esac
  done
}
teardown() {
  local rc=$? i p
  trap - EXIT INT TERM
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
      for f in "$tmp"/log/*.log "$tmp"/job-*/slurm-*.out; do
        [ -f "$f" ] || continue
        echo "---- last lines of ${f#"$tmp"/}"
        tail -n 25 "$f"
      done
    fi
    if [ -n "$ctld_pid" ] && kill -0 "$ctld_pid" 2>/dev/null; then
      scancel --quiet --full --user=root 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        [ -z "$(squeue --noheader 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
    for p in $(leftovers); do
      echo "teardown: stopping leftover process $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null))"
      kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${CHAINRL_SLURM_TEST_KEEP:-0}" = "1" ]; then
      echo "teardown: kept $tmp"
    else
      rm -rf -- "$tmp"
    fi
  fi
  echo "slurm test: exit $rc after $((SECONDS - t_start)) s"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp="$(mktemp -d /tmp/chainrl-slurm.XXXXXX)"
mkdir -p "$tmp"/{bin,munge,state,spool,log,work}
chmod 700 "$tmp/munge"
# A private copy of the binaries, so that a rebuild during the test changes nothing. A binary
# being relinked is missing, not executable or changing: wait until a copy is whole and runs.
copied=0
for _ in $(seq 1 90); do
  if [ -x "$build/bin/chainrl" ]; then
    before="$(stat -c '%s %Y' "$build/bin/chainrl")"
    cp "$build/bin/chainrl" "$tmp/bin/chainrl"
    if [ -x "$build/bin/chainrl-reward-worker" ]; then
      cp "$build/bin/chainrl-reward-worker" "$tmp/bin/"
    fi
    if [ "$(stat -c '%s %Y' "$build/bin/chainrl")" = "$before" ] &&
      "$tmp/bin/chainrl" version >/dev/null 2>&1; then
      copied=1
      break
    fi
  fi
  sleep 2
done
[ "$copied" -eq 1 ] || fail "$build/bin/chainrl: no runnable chainrl within 3 minutes"
say "temporary directory $tmp; $(slurmctld -V), $(munged -V 2>&1 | awk '{print $1; exit}')"

# ---- free ports: a block of 32 that nothing on this host has bound -----------------------------
used=" $(awk 'FNR > 1 { n = split($2, a, ":"); print a[n] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null |
  while read -r h; do echo $((16#$h)); done | tr '\n' ' ') "
base=""
for _ in $(seq 1 200); do
  b=$((20000 + RANDOM % 10000))
  ok=1
  for ((p = b; p < b + 32; p++)); do
    case "$used" in *" $p "*)
      ok=0
      break
      ;;
    esac
  done
  if [ "$ok" -eq 1 ]; then
    base=$b
    break
  fi
done
[ -n "$base" ] || fail "no free block of 32 TCP ports in 20000-30031"
ctld_port=$base

# ---- MUNGE -------------------------------------------------------------------------------------
sock="$tmp/munge/munge.socket"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$tmp/munge/munge.key"
munged --foreground --force --socket="$sock" --key-file="$tmp/munge/munge.key" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/log/munged.log" \
  --seed-file="$tmp/munge/munged.seed" >"$tmp/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  [ -S "$sock" ] && break
  sleep 0.1
done
munge --socket="$sock" --no-input | unmunge --socket="$sock" >/dev/null ||
  fail "munged does not answer on $sock"
say "munged up on $sock"

# ---- Slurm -------------------------------------------------------------------------------------
export SLURM_CONF="$tmp/slurm.conf"
cpus="$(nproc)"
write_conf() {  # write_conf NODES: slurm.conf for nodes n1..nNODES, all on this host
  local n="$1" i
  cat >"$SLURM_CONF" <<EOF
ClusterName=chainrltest
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool/%n
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd-%n.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SwitchType=switch/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=600
EOF
  for ((i = 1; i <= n; i++)); do
    echo "NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((base + i)) CPUs=$cpus State=UNKNOWN" >>"$SLURM_CONF"
  done
  echo "PartitionName=test Nodes=ALL Default=YES MaxTime=30 State=UP" >>"$SLURM_CONF"
}
# start_cluster NODES: slurmctld and one slurmd per node; 0 when every node is idle within 30 s.
start_cluster() {
  local n="$1" i state
  write_conf "$n"
  slurmctld -D -c -f "$SLURM_CONF" >"$tmp/log/slurmctld.out" 2>&1 &
  ctld_pid=$!
  pids+=("$ctld_pid")
  for _ in $(seq 1 100); do
    scontrol ping >/dev/null 2>&1 && break
    kill -0 "$ctld_pid" 2>/dev/null || fail "slurmctld exited: $(tail -n 5 "$tmp/log/slurmctld.out" "$tmp/log/slurmctld.log" 2>&1)"
    sleep 0.1
  done
  slurmd_pids=()
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$tmp/spool/n$i"
    slurmd -D -f "$SLURM_CONF" -N "n$i" >"$tmp/log/slurmd-n$i.out" 2>&1 &
    slurmd_pids+=($!)
    pids+=($!)
  done
  for _ in $(seq 1 150); do
    state="$(sinfo --noheader --Node --format='%N %t' 2>/dev/null | sort -u)"
    if [ "$(grep -c ' idle$' <<<"$state")" -eq "$n" ]; then return 0; fi
    for i in "${slurmd_pids[@]}"; do kill -0 "$i" 2>/dev/null || return 1; done
    sleep 0.2
  done
  return 1
}
stop_cluster() {  # the daemons started by start_cluster (munged stays)
  local i
  for ((i = ${#pids[@]} - 1; i >= 1; i--)); do stop_pid "${pids[i]}"; done
  pids=("${pids[0]}")
  rm -rf "${tmp:?}/state" "${tmp:?}/spool"
  mkdir -p "$tmp/state" "$tmp/spool"
}

t_cluster=$SECONDS
nodes=3
multiple_reason=""
if start_cluster 3; then
  say "3 slurmd (n1-n3) on this host: this Slurm runs several slurmd per host"
else
  multiple_reason="3 slurmd on one host did not come up: $(sinfo --noheader --Node --format='%N %t %E' 2>/dev/null |
    sort -u | tr '\n' ';') $(cat "$tmp"/log/slurmd-n*.out 2>/dev/null | grep -iE 'error|fatal' | grep -viE 'pmix|mpi' | head -n 3 | tr '\n' ' ')"
  say "$multiple_reason"
  say "falling back to one node"
  stop_cluster
  nodes=1
  start_cluster 1 || fail "the one-node cluster did not come up: $(sinfo --noheader --Node --format='%N %t %E' 2>&1)"
fi
cluster_seconds=$((SECONDS - t_cluster))
say "cluster of $nodes node(s) up in $cluster_seconds s: $(sinfo --noheader --Node --format='%N/%t' | sort -u | tr '\n' ' ')"

# ---- jobs --------------------------------------------------------------------------------------
# The shortened quickstart (tests/apps/train_process_test.cc, QuickstartConfigRunsShortened).
steps=3
prompts_per_step=4
shortened=(--set "model.path=\"$tmp/model\"" --set sft.steps=3 --set sft.batch_size=8
  --set "run.total_steps=$steps" --set data.num_eval_examples=8 --set data.num_train_examples=500
  --set "rollout.prompts_per_step=$prompts_per_step" --set rollout.max_new_tokens=32
  --set curriculum.budget_start=32 --set curriculum.budget_end=16
  --set metrics.progress_interval_seconds=0)
# The run of a job: its summary balances, one step event per update, every actor and rank ran.
# Arguments: RUN_DIR STEPS GROUPS_PER_STEP LEARNER_RANKS ACTORS JOB_NAME WALL_SECONDS.
read -r -d '' checker <<'PY' || true
import json, os, sys
run, steps, per_step, ranks, actors, name, wall = sys.argv[1:]
steps, per_step, ranks, actors = int(steps), int(per_step), int(ranks), int(actors)
s = json.load(open(os.path.join(run, "summary.json")))
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
for k in ("steps", "groups_dispatched", "groups_accepted", "groups_trained", "groups_buffered",
          "groups_duplicated", "groups_lost", "tokens_trained", "sft_steps", "learner_ranks"):
    want(s.get(k) is not None, "summary lacks " + k)
if not problems:
    want(s.get("completed") is True, "completed is not true")
    want(s["steps"] == steps, "steps %s != %d" % (s["steps"], steps))
    want(s["groups_trained"] == steps * per_step,
         "groups_trained %s != %d" % (s["groups_trained"], steps * per_step))
    want(s["groups_duplicated"] == 0, "groups_duplicated %s" % s["groups_duplicated"])
    want(s["groups_lost"] == 0, "groups_lost %s" % s["groups_lost"])
    want(s["groups_accepted"] >= s["groups_trained"] + s["groups_buffered"],
         "groups_accepted < trained + buffered")
    want(s["groups_dispatched"] >= s["groups_accepted"], "groups_dispatched < accepted")
    want(s["tokens_trained"] > 0, "no tokens trained")
    want(s["sft_steps"] == 3, "sft_steps %s != 3" % s["sft_steps"])
    want(s["learner_ranks"] == ranks, "learner_ranks %s != %d" % (s["learner_ranks"], ranks))
step_events, joined = 0, set()
for line in open(os.path.join(run, "events.jsonl")):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "step":
        step_events += 1
    msg = e.get("msg", "")
    if e.get("role") == "learner" and " joined from " in msg:
        joined.add(msg.split(" ")[0].split("/")[-1])  # "actor-N", or "KEYNAME/actor-N" under CURVE
want(step_events == steps, "%d step events, not %d" % (step_events, steps))
# Every actor connected and left cleanly; which of them the learner saw join (or even got weights)
# within a 3-step run depends on timing, so only "at least one, and none unknown" is required.
expected = {"actor-%d" % i for i in range(actors)}
want(joined and joined <= expected, "actors joined: %s" % sorted(joined))
for a in sorted(expected):
    path = os.path.join(run, "logs", a + ".log")
    text = open(path).read() if os.path.exists(path) else ""
    for needle in ("connected to tcp://", "stopped"):
        want(needle in text, "%s.log lacks '%s'" % (a, needle))
for r in range(ranks):
    want(os.path.exists(os.path.join(run, "logs", "learner-rank%d.log" % r)),
         "no log of learner rank %d" % r)
want(os.path.exists(os.path.join(run, "export", "model.safetensors")), "no exported model")
if problems:
    print("job '%s': the run does not balance: %s" % (name, "; ".join(problems)))
    sys.exit(1)
print("job '%s': %d s, steps %d, groups dispatched %d / accepted %d / trained %d / buffered %d, "
      "lost %d, duplicated %d, tokens trained %d, learner ranks %d, actors seen joining %s, "
      "learner wall %.1f s"
      % (name, int(wall), s["steps"], s["groups_dispatched"], s["groups_accepted"],
         s["groups_trained"], s["groups_buffered"], s["groups_lost"], s["groups_duplicated"],
         s["tokens_trained"], s["learner_ranks"], ",".join(sorted(joined)), s["wall_seconds"]))
PY
summary_lines=()
job_number=0
# CURVE keys, where this chainrl has them (`chainrl keys`, [security]): the first job passes them
# through the sbatch script's CHAINRL_*KEY* variables (on loopback, so nothing is exposed).
curve_env=()
if "$tmp/bin/chainrl" keys --help >/dev/null 2>&1 &&
  "$tmp/bin/chainrl" config show "$root/configs/quickstart.toml" | grep -q '^\[security\]'; then
  mkdir -p "$tmp/keys"
  "$tmp/bin/chainrl" keys learner --dir "$tmp/keys" >/dev/null
  "$tmp/bin/chainrl" keys actor --dir "$tmp/keys" >/dev/null
  curve_env=(CHAINRL_LEARNER_KEY="$tmp/keys/learner.key" CHAINRL_AUTHORIZED_KEYS="$tmp/keys/actor.pub"
    CHAINRL_ACTOR_KEY="$tmp/keys/actor.key" CHAINRL_LEARNER_PUBLIC_KEY="$tmp/keys/learner.pub")
  say "this chainrl has CURVE keys: the first job uses them"
else
  say "this chainrl has no CURVE keys (no 'chainrl keys' or [security]): every job runs without"
fi

# run_job NAME NODES LEARNER_NODES ACTORS_PER_NODE RANKS ACTORS: submits the sbatch script and
# checks its run.
run_job() {
  local name="$1" job_nodes="$2" learner_nodes="$3" actors_per_node="$4" ranks="$5" actors="$6"
  local dir="$tmp/job-$name" port=$((base + 8 + 4 * job_number)) t0=$SECONDS rc=0 id out l
  local keys=()
  [ "$job_number" -eq 0 ] && keys=("${curve_env[@]}")
  job_number=$((job_number + 1))
  mkdir -p "$dir"
  say "job '$name': sbatch --nodes=$job_nodes, learner on $learner_nodes node(s) ($ranks rank(s)), $actors actor(s)${keys[0]:+, CURVE keys}"
  out="$(cd "$tmp/work" && env "${keys[@]}" CHAINRL_BIN="$tmp/bin/chainrl" CHAINRL_RUN_DIR="$dir/run" \
    CHAINRL_PORT="$port" CHAINRL_LEARNER_HOST_BIND=127.0.0.1 CHAINRL_LEARNER_NODES="$learner_nodes" \
    CHAINRL_ACTORS_PER_NODE="$actors_per_node" CHAINRL_ACTOR_STOP_SECONDS=20 \
    timeout 300 sbatch --wait --parsable --exclusive --nodes="$job_nodes" --time=5 \
    --job-name="chainrl-$name" --output="$dir/slurm-%j.out" \
    "$sbatch_script" "$root/configs/quickstart.toml" "${shortened[@]}" 2>&1)" || rc=$?
  id="$(grep -oE '^[0-9]+' <<<"$out" | head -n 1)"
  local wall=$((SECONDS - t0))
  while IFS= read -r l; do echo "  sbatch: $l"; done <<<"$out"
  [ -n "$id" ] || fail "job '$name': sbatch gave no job id"
  sed 's/^/  job: /' "$dir/slurm-$id.out"
  [ "$rc" -eq 0 ] || fail "job '$name' ($id): sbatch --wait exited $rc"
  local state
  state="$(scontrol show job -o "$id" | tr ' ' '\n' | grep -E '^(JobState|ExitCode)=' | tr '\n' ' ')"
  [[ "$state" == *"JobState=COMPLETED"*"ExitCode=0:0"* ]] || fail "job '$name' ($id): $state"
  grep -q "learner status 0, actors status 0" "$dir/slurm-$id.out" ||
    fail "job '$name': the learner or the actors did not exit 0"
  if [ ${#keys[@]} -gt 0 ]; then
    grep -q "CURVE: the learner admits the actors in $tmp/keys/actor.pub" "$dir/slurm-$id.out" ||
      fail "job '$name': the sbatch script did not pass the CURVE keys"
  fi
  # Where the steps ran, from the slurmds' logs: the learner's on the first node(s), the actors'
  # on the others (one node: both there).
  local i launched
  for ((i = 1; i <= job_nodes; i++)); do
    launched="$(grep -cE "launch task StepId=$id\.[0-9]+ " "$tmp/log/slurmd-n$i.log" || true)"
    if [ "$job_nodes" -eq 1 ]; then
      [ "$launched" -eq 2 ] || fail "job '$name': n$i launched $launched steps, not 2"
    else
      [ "$launched" -eq 1 ] || fail "job '$name': n$i launched $launched steps, not 1"
    fi
  done
  local line
  line="$(python3 -c "$checker" "$dir/run" "$steps" "$prompts_per_step" "$ranks" "$actors" "$name" "$wall")" ||
    fail "${line:-job $name: no run to check (see above)}"
  local script_s
  script_s="$(grep -oE 'done in [0-9]+ s' "$dir/slurm-$id.out" | grep -oE '[0-9]+' || echo '?')"
  summary_lines+=("$line, batch script $script_s s")
  say "job '$name' ($id) passed in $wall s"
}

if [ "$nodes" -eq 3 ]; then
  run_job three-nodes 3 1 1 1 2        # learner on n1, one actor on each of n2 and n3
  run_job two-learner-ranks 3 2 2 2 2  # learner ranks on n1 and n2, two actors on n3
fi
run_job one-node 1 1 2 1 2             # learner and two actors on one node

say "PASS: $nodes node(s)${multiple_reason:+ (several slurmd per host failed: $multiple_reason)}"
for l in "${summary_lines[@]}"; do say "  $l"; done
say "total $((SECONDS - t_start)) s (cluster start $cluster_seconds s)"
