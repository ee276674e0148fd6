#!/usr/bin/env bash
# A machine with a CUDA GPU checked in one command (README, "Checking a GPU machine"):
#   1. build (Release, ENGINE_CUDA=ON, CMAKE_CUDA_ARCHITECTURES from nvidia-smi's compute_cap);
#   2. the CUDA-vs-CPU tests (cuda_tests) with ENGINE_REQUIRE_CUDA=1, so a skip is a failure;
#   3. cuda_tests (less its [large] cases) under compute-sanitizer memcheck, racecheck and
#      synccheck, when installed, each with a time cap;
#   4. configs/tiny.yaml trained for 50 steps on device cuda and on cpu, every logged loss
#      compared (relative tolerance 1e-3: both f32, no TF32, so only summation order differs;
#      50 steps keep top-k routing flips, which would amplify it, rare);
#   5. moe-bench on cuda for configs/bench/{tiny,small,wide}.yaml in f32 and bf16, model FLOP/s
#      against the GPU's peak at that precision;
# then one summary table, also written to BUILD/gpu_check/summary.txt. Exit status 0 when every
# check passed, 1 otherwise. About 10-15 minutes on one H100-class GPU: the build, then the
# three sanitizer runs.
#
# Without a usable GPU (no nvidia-smi, no device, or no nvcc) it says so and exits 0 at once,
# so it can run anywhere (tests/tools/gpu_check_test.sh).
#
# Environment: GPU_CHECK_BUILD_DIR (default build), GPU_CHECK_NVIDIA_SMI (default nvidia-smi), GPU_CHECK_NVCC (default nvcc on PATH, else
# /usr/local/cuda/bin/nvcc), GPU_CHECK_PEAK_F32_TFLOPS and GPU_CHECK_PEAK_BF16_TFLOPS (the peaks
# for a GPU the table below does not know, or to override it), GPU_CHECK_LOSS_RTOL (1e-3),
# GPU_CHECK_SANITIZER_SECONDS (240), GPU_CHECK_BENCH_STEPS (10), GPU_CHECK_SKIP_BUILD=1 (use the
# build already in GPU_CHECK_BUILD_DIR), GPU_CHECK_DEVICE (cuda; cpu runs every step against the
# CPU, a dry run of this script's own plumbing on a machine whose nvidia-smi is faked).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

no_gpu() {
  echo "gpu_check: no usable GPU here ($1); nothing to check"
  exit 0
}

# --- is there a GPU to check? (seconds at most) ---
smi=${GPU_CHECK_NVIDIA_SMI:-nvidia-smi}
command -v "$smi" >/dev/null 2>&1 || no_gpu "$smi not found"
gpu_line=$(timeout 20 "$smi" --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1)
smi_status=$?
if ((smi_status != 0)) || [[ -z $gpu_line ]]; then
  no_gpu "nvidia-smi found no device: $(echo "$gpu_line" | head -1)"
fi
gpu_line=$(echo "$gpu_line" | head -1)  # several GPUs: the first one is the one the engine uses
nvcc=${GPU_CHECK_NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[[ -x $nvcc ]] || no_gpu "nvcc not found at $nvcc (install the CUDA toolkit or set GPU_CHECK_NVCC)"

IFS=, read -r gpu_name compute_cap driver memory <<<"$gpu_line"
trim() { sed 's/^ *//; s/ *$//' <<<"$1"; }
gpu_name=$(trim "$gpu_name") compute_cap=$(trim "$compute_cap") driver=$(trim "$driver") memory=$(trim "$memory")
arch=${compute_cap//./}
[[ $arch =~ ^[0-9]+$ ]] || arch=90  # an old nvidia-smi without compute_cap: Hopper
build=${GPU_CHECK_BUILD_DIR:-build}
out=$build/gpu_check
rm -rf "$out"
mkdir -p "$out"
jobs=$(nproc)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$jobs}
export ENGINE_REQUIRE_CUDA=1  # a CUDA test main that skips for want of a device fails instead
rtol=${GPU_CHECK_LOSS_RTOL:-1e-3}
device=${GPU_CHECK_DEVICE:-cuda}
bench_steps=${GPU_CHECK_BENCH_STEPS:-10}
failed=0
checks=()  # "name|result|detail"
note() { checks+=("$1|$2|$3"); [[ $2 == FAIL ]] && failed=1; echo "== $1: $2 $3"; }

# Dense peaks (no sparsity) in TFLOP/s from NVIDIA's H100 and H200 datasheets: f32 is the
# non-tensor FP32 rate (the engine's f32 GEMMs keep cuBLAS's default math, no TF32), bf16 the
# BF16 tensor-core rate (datasheets print twice this "with sparsity"). The H200 has the H100's
# compute (SXM: 67 and 989; NVL: 60 and 835); H100 PCIe: 51 and 756.
peak_f32="" peak_bf16=""
case $gpu_name in
  *H200*NVL* | *H100*NVL*) peak_f32=60 peak_bf16=835 ;;
  *H100*PCIe*) peak_f32=51 peak_bf16=756 ;;
  *H200* | *H100*) peak_f32=67 peak_bf16=989 ;;  # SXM ("NVIDIA H100 80GB HBM3", "NVIDIA H200")
esac
peak_f32=${GPU_CHECK_PEAK_F32_TFLOPS:-$peak_f32}
peak_bf16=${GPU_CHECK_PEAK_BF16_TFLOPS:-$peak_bf16}
echo "== $gpu_name (compute capability $compute_cap, sm_$arch), driver $driver, $memory; logs in $out/"

# --- 1. build ---
start=$SECONDS
if [[ ${GPU_CHECK_SKIP_BUILD:-0} == 1 ]]; then
  note "build (Release, CUDA sm_$arch)" SKIPPED "GPU_CHECK_SKIP_BUILD=1: using $build as it is"
elif cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DENGINE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
       -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$out/build.log" 2>&1 &&
     cmake --build "$build" -j "$jobs" --target moe-train moe-bench cuda_tests >>"$out/build.log" 2>&1; then
  note "build (Release, CUDA sm_$arch)" ok "$((SECONDS - start)) s"
else
  note "build (Release, CUDA sm_$arch)" FAIL "see $out/build.log"
  tail -20 "$out/build.log"
  exit 1
fi
bin=$build/bin

# --- 2. CUDA-vs-CPU tests ---
start=$SECONDS
timeout 300 "$bin/cuda_tests" >"$out/cuda_tests.log" 2>&1
status=$?
summary=$(grep -E "^(All tests passed|test cases:)" "$out/cuda_tests.log" | tail -1)
versions=$(grep -m1 "^CUDA versions:" "$out/cuda_tests.log")
[[ -n $versions ]] && echo "== $versions"
# ENGINE_REQUIRE_CUDA=1 turns "no usable device" into exit 1 with this line naming the reason.
unusable=$(grep -m1 "^FAILED: ENGINE_REQUIRE_CUDA" "$out/cuda_tests.log")
[[ -n $unusable ]] && status=unusable
case $status in
  unusable) note "cuda_tests (CUDA vs CPU)" FAIL "${unusable#FAILED: }" ;;
  0) note "cuda_tests (CUDA vs CPU)" PASS "$summary ($((SECONDS - start)) s)" ;;
  77) note "cuda_tests (CUDA vs CPU)" FAIL "skipped on a GPU machine: $(grep -m1 SKIPPED "$out/cuda_tests.log")" ;;
  124) note "cuda_tests (CUDA vs CPU)" FAIL "timed out after 300 s" ;;
  *) note "cuda_tests (CUDA vs CPU)" FAIL "exit $status: $summary (see $out/cuda_tests.log)" ;;
esac

# --- 3. the same under compute-sanitizer: memcheck, racecheck, synccheck ---
# Each tool runs the suite without its real-size cases ([large]): under the sanitizers those
# take minutes, and the small cases already reach every kernel's code paths.
sanitizer=$(command -v compute-sanitizer || echo "$(dirname "$nvcc")/compute-sanitizer")
cap=${GPU_CHECK_SANITIZER_SECONDS:-240}
for tool in memcheck racecheck synccheck; do
  name="compute-sanitizer $tool"
  if [[ ! -x $sanitizer ]]; then
    note "$name" SKIPPED "compute-sanitizer not installed"
    continue
  fi
  start=$SECONDS
  log="$out/$tool.log"
  timeout "$cap" "$sanitizer" --tool "$tool" --error-exitcode 3 "$bin/cuda_tests" "~[large]" >"$log" 2>&1
  status=$?
  errors=$(grep -m1 -E "(ERROR|RACECHECK) SUMMARY: [0-9]+" "$log")
  case $status in
    0) note "$name" PASS "${errors:-no errors} ($((SECONDS - start)) s)" ;;
    # The cap cuts a slow run short: what ran reported nothing, which is worth knowing but no pass.
    124) if grep -q "Invalid\|SUMMARY: [1-9]" "$log"; then
           note "$name" FAIL "errors before the $cap s cap (see $log)"
         else
           note "$name" INCOMPLETE "stopped at the $cap s cap, no error until then"
         fi ;;
    *) note "$name" FAIL "exit $status: ${errors:-see $log}" ;;
  esac
done

# --- 4. the same training on cuda and on cpu ---
train() {  # device, name; writes $out/train_NAME/metrics.csv
  "$bin/moe-train" --config configs/tiny.yaml --set training.steps=50 --set logging.every=5 \
    --set training.eval_every=0 --set "device=$1" --out "$out/train_$2" >"$out/train_$2.log" 2>&1
}
if train "$device" checked && train cpu reference; then
  # metrics.csv: step, loss, ...; one row per logged step.
  verdict=$(paste -d, <(tail -n +2 "$out/train_checked/metrics.csv" | cut -d, -f1,2) \
                      <(tail -n +2 "$out/train_reference/metrics.csv" | cut -d, -f1,2) |
    awk -F, -v rtol="$rtol" -v dev="$device" 'BEGIN { worst = -1 }
      { if ($1 != $3) { bad = "steps differ: " $1 " against " $3; exit }
        d = $2 - $4; if (d < 0) d = -d; den = $4 < 0 ? -$4 : $4; r = d / (den > 0 ? den : 1e-30);
        n++; if (r > worst) { worst = r; at = $1; a = $2; b = $4 }; if (r > rtol) over++ }
      END { if (bad != "") { print "FAIL|" bad; exit }
            if (n == 0) { print "FAIL|no logged steps"; exit }
            printf "%s|%d logged steps, largest relative difference %.2e at step %d (%s %s, cpu %s), tolerance %s\n",
                   (over ? "FAIL" : "PASS"), n, worst, at, dev, a, b, rtol }')
  note "loss $device vs cpu (tiny, 50 steps)" "${verdict%%|*}" "${verdict#*|}"
else
  note "loss $device vs cpu (tiny, 50 steps)" FAIL "a training run failed (see $out/train_*.log)"
fi

# --- 5. moe-bench on cuda ---
bench_rows=()
field() { grep -o "\"$1\": [0-9.e+-]*" <<<"$json" | head -1 | awk '{print $2}'; }  # a number from moe-bench --json
for config in tiny small wide; do
  for precision in f32 bf16; do
    json=$("$bin/moe-bench" --config "configs/bench/$config.yaml" --set "device=$device" --set "precision=$precision" \
      --warmup 3 --steps "$bench_steps" --no-profile --json 2>"$out/bench_${config}_$precision.log")
    if [[ $? -ne 0 || -z $json ]]; then
      note "moe-bench $config $precision" FAIL "see $out/bench_${config}_$precision.log"
      continue
    fi
    echo "$json" >"$out/bench_${config}_$precision.json"
    peak=$([[ $precision == f32 ]] && echo "$peak_f32" || echo "$peak_bf16")
    bench_rows+=("$(awk -v c="$config" -v p="$precision" -v s="$(field median_step_s)" -v t="$(field tokens_per_s)" \
      -v g="$(field model_gflops)" -v peak="$peak" 'BEGIN {
        share = peak == "" ? "-" : sprintf("%.1f%%", 100 * g / 1000 / peak);
        printf "%-6s %-5s %9.2f %11.0f %13.2f %10s %9s", c, p, 1e3 * s, t, g / 1000, (peak == "" ? "?" : peak), share }')")
  done
done

# --- summary ---
{
  echo "gpu_check $(date -u '+%Y-%m-%d %H:%M UTC'): $gpu_name (sm_$arch), driver $driver, $memory, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  printf "%-36s %-10s %s\n" check result detail
  for c in "${checks[@]}"; do
    IFS='|' read -r name result detail <<<"$c"
    printf "%-36s %-10s %s\n" "$name" "$result" "$detail"
  done
  echo
  echo "moe-bench on $device ($bench_steps timed steps after 3 warm-up): model FLOP/s against the GPU's dense peak"
  echo "(f32: FP32 non-tensor, no TF32; bf16: BF16 tensor cores; NVIDIA datasheets, or GPU_CHECK_PEAK_*_TFLOPS)"
  printf "%-6s %-5s %9s %11s %13s %10s %9s\n" config prec step_ms tokens/s model_TFLOP/s peak_TFLOP/s "of peak"
  for r in "${bench_rows[@]}"; do echo "$r"; done
  [[ -z $peak_f32 || -z $peak_bf16 ]] &&
    echo "(no peak known for \"$gpu_name\": set GPU_CHECK_PEAK_F32_TFLOPS and GPU_CHECK_PEAK_BF16_TFLOPS)"
  echo
  ((failed)) && echo "RESULT: FAILED" || echo "RESULT: all checks passed"
} | tee "$out/summary.txt"
echo "(written to $out/summary.txt)"
exit $failed
