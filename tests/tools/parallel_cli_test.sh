#!/usr/bin/env bash
# moe-train, moe-bench and moe-diagnose under mpirun, from the outside: what a user sees.
# Usage: parallel_cli_test.sh CASE MPIRUN MOE_TRAIN MOE_INSPECT CONFIG WORK_DIR
#   bad_input    EP not dividing E or the world, configs that differ between ranks, parallel
#                without mpirun: one clear error, non-zero exit everywhere, no hang
#   killed_rank  a rank killed with SIGKILL: mpirun and the other ranks end within 60 s, the
#                lost rank is named, the last checkpoint stays loadable
#   sigterm      SIGTERM to mpirun: every rank finishes the step, one checkpoint, resumable
#   repeat       the same mpirun command twice: bit-identical losses; moe-diagnose on its checkpoint
#   imbalance    moe-bench with routing held skewed, and moe-diagnose's prediction from its checkpoint
# (moe-bench and moe-diagnose are taken from the folders of MOE_TRAIN and MOE_INSPECT.)
# Each case prints PASS: ... last; CTest looks for it.
set -u
case=$1 mpirun=$2 train=$3 inspect=$4 config=$5 work=$6
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
small=(--config "$config" --set model.n_layers=2 --set training.seq_len=32 --set training.batch_size=2
       --set training.eval_every=0 --set schedule.warmup_steps=1 --set logging.every=1)
fail() { echo "FAIL: $*"; exit 1; }
# Runs a command with a time limit; its exit status, or 124 when it had to be killed.
limited() { timeout -k 5 "$1" "${@:2}"; }

errors_in() { grep -c "^moe-train: " "$1"; }  # the program's own error lines

case $case in
bad_input)
  limited 60 "$mpirun" -np 2 "$train" "${small[@]}" --set parallel.expert=3 --out run1 >log1 2>&1
  rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "EP 3 with 8 experts: exit $rc"
  grep -q "parallel.expert: must divide moe.num_experts (8), got 3" log1 || { cat log1; fail "EP 3: no message"; }
  [[ $(errors_in log1) -eq 1 ]] || { cat log1; fail "EP 3: not exactly one error line"; }

  limited 60 "$mpirun" -np 2 "$train" "${small[@]}" --set parallel.expert=4 --out run2 >log2 2>&1
  rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "EP 4 on 2 ranks: exit $rc"
  grep -q "parallel.expert: 4 must divide the number of ranks (2)" log2 || { cat log2; fail "EP 4: no message"; }
  [[ $(errors_in log2) -eq 1 ]] || { cat log2; fail "EP 4: not exactly one error line"; }

  limited 60 "$mpirun" -np 1 "$train" "${small[@]}" --out run3 : -np 1 "$train" "${small[@]}" \
    --set optimizer.lr=0.001 --out run3 >log3 2>&1
  rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || fail "differing configs: exit $rc"
  grep -q "^moe-train: rank 1: the config differs from rank 0's in optimizer.lr" log3 || { cat log3; fail "differing configs: no message"; }
  [[ $(errors_in log3) -eq 1 ]] || { cat log3; fail "differing configs: not exactly one error line"; }

  limited 60 "$train" "${small[@]}" --set parallel.expert=2 --out run4 >log4 2>&1
  rc=$?
  [[ $rc -eq 2 ]] || fail "parallel.expert 2 without mpirun: exit $rc, expected 2"
  grep -q "parallel.expert = 2 needs that many processes or a multiple: start with mpirun" log4 ||
    { cat log4; fail "without mpirun: no message"; }
  [[ ! -e run4/checkpoints ]] || fail "a refused run wrote checkpoints"
  echo "PASS: bad input ends every rank with one error and no hang"
  ;;
killed_rank)
  "$mpirun" -np 2 "$train" "${small[@]}" --set training.steps=100000 --set logging.every=10 \
    --set checkpointing.every=20 --set parallel.expert=2 --out run >log 2>&1 &
  launcher=$!
  for _ in $(seq 1 600); do [[ -e run/checkpoints/step_00000040.h5 ]] && break; sleep 0.1; done
  [[ -e run/checkpoints/step_00000040.h5 ]] || { cat log; fail "no checkpoint at step 40"; }
  victim=$(pgrep -P "$launcher" -f "$train" | tail -1)
  [[ -z $victim ]] && victim=$(pgrep -f "$train.*--out run" | tail -1)
  [[ -n $victim ]] || fail "no rank process found"
  kill -KILL "$victim"
  start=$SECONDS
  while kill -0 "$launcher" 2>/dev/null && ((SECONDS - start < 60)); do sleep 0.2; done
  if kill -0 "$launcher" 2>/dev/null; then
    pkill -KILL -f "$train.*--out run"
    fail "mpirun still running 60 s after a rank was killed"
  fi
  wait "$launcher"
  rc=$?
  [[ $rc -ne 0 ]] || fail "mpirun exited 0 after a rank was killed"
  pgrep -f "$train.*--out run" >/dev/null && fail "a rank outlived mpirun"
  grep -Eq "rank [01] .*(signal 9|Killed)" log || { tail -20 log; fail "the lost rank is not named"; }
  last=$(ls run/checkpoints/step_*.h5 | tail -1)
  "$inspect" "$last" --no-config >inspect.log 2>&1 || { cat inspect.log; fail "the last checkpoint $last does not load"; }
  echo "PASS: a killed rank ends the run within $((SECONDS - start)) s; $last loads"
  ;;
sigterm)
  # To mpirun: OpenMPI passes SIGTERM on, stops forwarding output and sends SIGKILL 1 s later
  # (odls_base_sigkill_timeout): the ranks must finish the step and save within that, and
  # their last lines may be dropped. To the ranks themselves: every line arrives.
  for target in mpirun ranks; do
    rm -rf run log
    "$mpirun" -np 2 "$train" "${small[@]}" --set training.steps=100000 --set checkpointing.every=0 \
      --set parallel.expert=2 --out run >log 2>&1 &
    launcher=$!
    for _ in $(seq 1 600); do grep -q "^step 3/" log && break; sleep 0.1; done
    if [[ $target == mpirun ]]; then kill -TERM "$launcher"; else pkill -TERM -P "$launcher" -x "$(basename "$train")"; fi
    wait "$launcher"
    rc=$?
    [[ $rc -ne 0 ]] || fail "SIGTERM to the $target: mpirun exited 0"
    count=$(ls run/checkpoints/step_*.h5 2>/dev/null | wc -l)
    [[ $count -eq 1 ]] || { tail log; fail "SIGTERM to the $target: $count checkpoints, expected the one of the stop"; }
    saved=$(ls run/checkpoints/step_*.h5)
    step=$(basename "$saved" .h5 | sed 's/step_0*//')
    if [[ $target == ranks ]]; then
      grep -q "stopped by SIGTERM after step $step; continue with --resume latest" log ||
        { tail log; fail "SIGTERM to the ranks: no stop message for step $step"; }
    fi
    limited 120 "$mpirun" -np 2 "$train" "${small[@]}" --set training.steps=$((step + 2)) --set parallel.expert=2 \
      --out run --resume latest >resume.log 2>&1 || { cat resume.log; fail "resuming after SIGTERM to the $target"; }
    grep -q "resumed from .* at step $step" resume.log || { cat resume.log; fail "no resume message"; }
    echo "SIGTERM to the $target: saved step $step once, resumed"
  done
  echo "PASS: SIGTERM to mpirun or to the ranks saves the step once; the run resumes"
  ;;
repeat)
  for n in 1 2; do
    limited 120 env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY "$mpirun" --bind-to none -np 2 "$train" "${small[@]}" \
      --set training.steps=8 --set parallel.expert=2 --set moe.router=noisy_topk --out "run$n" >"log$n" 2>&1 ||
      { cat "log$n"; fail "run $n"; }
  done
  # Every column but the measured times (tokens_per_s, each rank's compute and wait seconds, the
  # wait share); each rank's slots must repeat too.
  untimed() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) keep[i] = $i !~ /(tokens_per_s|_compute_s|_wait_s|_wait_share)$/ }
             { line = ""; for (i = 1; i <= NF; ++i) if (keep[i]) line = line $i ","; print line }' "$1"
  }
  untimed run1/metrics.csv >a.csv
  untimed run2/metrics.csv >b.csv
  [[ $(wc -l <a.csv) -eq 9 ]] || fail "expected 8 logged steps"
  grep -q "moe1_rank1_slots" a.csv || fail "metrics.csv has no per-rank slots"
  # A checkpoint of 2 ranks: moe-diagnose predicts for 2 ranks and shows what training measured.
  diagnose=$(dirname "$inspect")/moe-diagnose
  limited 120 "$diagnose" run1/checkpoints/step_00000008.h5 --ep 2 --batches 2 >diagnose.log 2>&1
  rc=$?
  [[ $rc -eq 0 || $rc -eq 3 ]] || { cat diagnose.log; fail "moe-diagnose on a 2-rank checkpoint: exit $rc"; }
  grep -q "kept slots per rank at N = 2" diagnose.log && grep -q "measured in training at step 8 over 2 devices on 2 ranks" \
    diagnose.log || { cat diagnose.log; fail "moe-diagnose --ep 2 shows no device view of the 2-rank run"; }
  cmp -s a.csv b.csv || { diff a.csv b.csv | head; fail "two identical runs logged different numbers"; }
  # Each rank's threads: its share of the cores, sleeping while they wait (the test's own
  # OMP_NUM_THREADS and OMP_WAIT_POLICY removed, so moe-train's defaults show; --bind-to none,
  # since OpenMPI binds each of 2 ranks to one core by default, which caps them at one thread).
  threads=$(( $(nproc) / 2 ))
  ((threads < 1)) && threads=1
  grep -q "$threads OpenMP threads per rank, waiting threads sleep" log1 ||
    { head -3 log1; fail "expected $threads OpenMP threads per rank, sleeping while they wait"; }
  # mpirun -np 1 is the one-process run.
  limited 120 "$mpirun" -np 1 "$train" "${small[@]}" --set training.steps=8 --set moe.router=noisy_topk \
    --out run_np1 >log_np1 2>&1 || { cat log_np1; fail "mpirun -np 1"; }
  limited 120 "$train" "${small[@]}" --set training.steps=8 --set moe.router=noisy_topk --out run_alone \
    >log_alone 2>&1 || { cat log_alone; fail "one process"; }
  untimed run_np1/metrics.csv >c.csv
  untimed run_alone/metrics.csv >d.csv
  cmp -s c.csv d.csv || { diff c.csv d.csv | head; fail "mpirun -np 1 differs from one process"; }
  echo "PASS: the same mpirun command twice logs bit-identical losses; mpirun -np 1 is one process"
  ;;
imbalance)
  # moe-bench holds the routing skewed: with rank 0's experts (0-3 of 8) biased by 10, every slot
  # goes to rank 0, a device imbalance of exactly 2 on 2 ranks; the checkpoint it saves gives
  # moe-diagnose --ep 2 the same prediction from the checkpoint alone. Unbiased, the routing of
  # the initial model is near balanced.
  bench=$(dirname "$train")/moe-bench
  diagnose=$(dirname "$inspect")/moe-diagnose
  quick=(--config "$config" --set model.n_layers=2 --set training.seq_len=32 --set training.batch_size=2
         --set parallel.expert=2 --set optimizer.lr=1e-9 --warmup 1 --steps 2 --no-profile)
  limited 120 "$mpirun" -np 2 "$bench" "${quick[@]}" --hot-experts 4 --checkpoint skewed.h5 >bench_skewed.log 2>&1 ||
    { cat bench_skewed.log; fail "moe-bench --hot-experts 4"; }
  grep -q "devices: 2; device imbalance 2.00 " bench_skewed.log || { cat bench_skewed.log; fail "expected imbalance 2"; }
  grep -q "slots per device per step 256 0" bench_skewed.log || { cat bench_skewed.log; fail "expected all 256 slots on rank 0"; }
  limited 120 "$diagnose" skewed.h5 --ep 2 --batches 1 >diagnose_skewed.log 2>&1
  [[ $? -eq 0 || $? -eq 3 ]] || { cat diagnose_skewed.log; fail "moe-diagnose on the benchmark's checkpoint"; }
  grep -qE "^all layers +2.00x" diagnose_skewed.log || { cat diagnose_skewed.log; fail "expected a predicted 2.00x"; }
  limited 120 "$mpirun" -np 2 "$bench" "${quick[@]}" >bench_balanced.log 2>&1 || { cat bench_balanced.log; fail "moe-bench"; }
  imbalance=$(grep -oE "device imbalance [0-9.]+" bench_balanced.log | awk '{print $3}')
  awk -v x="$imbalance" 'BEGIN { exit !(x >= 1 && x < 1.5) }' || { cat bench_balanced.log; fail "unbiased imbalance $imbalance"; }
  limited 60 "$mpirun" -np 2 "$bench" "${quick[@]}" --set moe.router=expert_choice --set moe.capacity_factor=1 \
    --hot-experts 4 >bench_bad.log 2>&1 && fail "--hot-experts with expert_choice should be refused"
  grep -q "the expert_choice router does not select with the loss-free bias" bench_bad.log ||
    { cat bench_bad.log; fail "no message for --hot-experts with expert_choice"; }
  echo "PASS: moe-bench holds the routing skewed (imbalance 2 on 2 ranks) and moe-diagnose predicts it from the checkpoint"
  ;;
*)
  fail "unknown case $case"
  ;;
esac
