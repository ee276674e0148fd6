#!/usr/bin/env bash
# moe-train on SIGTERM (and SIGINT) finishes its step, saves a checkpoint and exits 128 + signal
# with a message; the checkpoint then resumes. Usage: sigterm_test.sh MOE_TRAIN CONFIG OUT_DIR
set -u
bin=$1 config=$2 out=$3
for sig in TERM INT; do
  rm -rf "$out"
  mkdir -p "$out"
  "$bin" --config "$config" --set training.steps=100000 --set logging.every=1 --out "$out" >"$out.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do grep -q "^step 2/" "$out.log" && break; sleep 0.1; done
  kill -"$sig" "$pid"
  wait "$pid"
  rc=$?
  tail -2 "$out.log"
  [[ $sig == TERM ]] && want=143 || want=130
  [[ $rc -eq $want ]] || { echo "FAIL: SIG$sig gave exit status $rc, expected $want"; exit 1; }
  grep -q "stopped by SIG$sig after step [0-9]*; continue with --resume latest" "$out.log" ||
    { echo "FAIL: no stop message for SIG$sig"; exit 1; }
  saved=$(ls "$out"/checkpoints/step_*.h5 2>/dev/null | tail -1)
  [[ -n $saved ]] || { echo "FAIL: no checkpoint after SIG$sig"; exit 1; }
  step=$(basename "$saved" .h5 | sed 's/step_0*//')
  "$bin" --config "$config" --set training.steps=$((step + 1)) --out "$out" --resume latest >"$out.resume.log" 2>&1 ||
    { echo "FAIL: resuming after SIG$sig"; cat "$out.resume.log"; exit 1; }
  grep -q "resumed from .* at step $step" "$out.resume.log" || { echo "FAIL: resume message"; exit 1; }
done
echo "PASS: SIGTERM and SIGINT save, exit 143 / 130, and resume"
