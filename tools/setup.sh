#!/usr/bin/env bash
# One entry point for a fresh machine.
#   tools/setup.sh run    install what is missing, build (Release), train configs/tiny.yaml
#   tools/setup.sh test   install what is missing, build (Release, CUDA when nvcc exists) and run
#                         every test with ctest; then build with ASan+UBSan and run the CPU tests;
#                         then fuzz the config and checkpoint readers briefly (libFuzzer, clang)
# Installing needs root (apt-get); without it the script prints the apt-get line and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
case "$mode" in run|test) ;; *) echo "usage: tools/setup.sh run|test" >&2; exit 2 ;; esac

# Debian's oneDNN CMake config looks for OpenCL (its GPU runtime) even for CPU use, so the
# OpenCL headers and loader are needed to configure, though nothing here runs OpenCL.
# OpenMPI: training on several processes (mpirun); the engine also builds and runs without it.
packages=(build-essential cmake ninja-build libdnnl-dev ocl-icd-opencl-dev opencl-headers libhdf5-dev hdf5-tools
          libyaml-cpp-dev libboost-program-options-dev catch2 libopenmpi-dev openmpi-bin)
# The test mode also needs libFuzzer (the fuzz step) and a browser (the HTML report test).
[[ ${1:-run} == test ]] && packages+=(clang libclang-rt-14-dev chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "Missing packages. Run as root, or install them first:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

jobs=$(nproc)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$jobs}
# OpenMPI refuses to start as root unless told that is intended (containers, CI).
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

echo "== configuring and building (Release) in build/"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"

if [[ $mode == run ]]; then
  # A run folder that already holds checkpoints belongs to an earlier run (moe-train refuses to
  # start over it): each invocation gets a fresh folder.
  out=runs/tiny
  n=2
  while [[ -d $out/checkpoints ]]; do out=runs/tiny-$n; n=$((n + 1)); done
  echo "== main job: moe-train on configs/tiny.yaml (built-in synthetic data), metrics and checkpoints in $out/"
  ./build/bin/moe-train --config configs/tiny.yaml --out "$out"
  echo "== done; diagnose the run with: build/bin/moe-diagnose $out/checkpoints/step_00000400.h5 --report $out/report.html"
  exit 0
fi

# ctest runs tests side by side; OpenMP threads that spin while waiting then starve each other
# (a 1 s test took 7 minutes next to another), so waiting threads sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
echo "== tests (Release build)"
ctest --test-dir build --output-on-failure -j "$jobs"
if [[ -x build/bin/cuda_tests ]]; then
  # CTest hides a skipped test's output; say why the CUDA comparisons did or did not run.
  # cuda_tests exits 77 when it skips, which pipefail would pass on: decide by what it printed.
  skipped=$(./build/bin/cuda_tests --list-tests 2>&1 | grep '^SKIPPED' || true)
  if [[ -n $skipped ]]; then
    echo "$skipped"
  else
    echo "CUDA-vs-CPU tests ran on a device (results above)"
  fi
fi

# Without MPI: OpenMPI's own allocations at exit would drown LeakSanitizer's report, and this
# build is the check that the engine builds and runs without MPI (the MPI code is covered by
# the Release suite above).
echo "== building with AddressSanitizer + UndefinedBehaviorSanitizer in build-sanitize/ (CPU backend, no MPI)"
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Sanitize -DENGINE_CUDA=OFF -DENGINE_MPI=OFF >/dev/null
cmake --build build-sanitize -j "$jobs"
echo "== tests (sanitizers)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize --output-on-failure -j "$jobs"

fuzz_seconds=${FUZZ_SECONDS:-30}
echo "== fuzzing the config and checkpoint readers in build-fuzz/ (libFuzzer, ${fuzz_seconds} s each)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DENGINE_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$jobs"
mkdir -p build-fuzz/corpus/config build-fuzz/corpus/checkpoint
rm -f build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* build-fuzz/oom-*
# libhdf5 leaks a few bytes when it refuses a damaged file; those leaks are not ours.
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp
fuzz_flags=(-max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 -artifact_prefix=build-fuzz/ -print_final_stats=1)
build-fuzz/bin/fuzz_config "${fuzz_flags[@]}" build-fuzz/corpus/config configs tests/fuzz/seeds/config 2>&1 |
  grep -E "^(stat::number_of_executed_units|Done)|ERROR|SUMMARY" || true
build-fuzz/bin/fuzz_checkpoint "${fuzz_flags[@]}" build-fuzz/corpus/checkpoint tests/fuzz/seeds/checkpoint 2>&1 |
  grep -E "^(stat::number_of_executed_units|Done)|ERROR|SUMMARY" || true
if ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* build-fuzz/oom-* >/dev/null 2>&1; then
  echo "FUZZING FOUND A FAILURE: inputs in build-fuzz/ (crash-*, leak-*, timeout-*, oom-*)" >&2
  exit 1
fi
echo "== all tests passed"
