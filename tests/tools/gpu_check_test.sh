#!/usr/bin/env bash
# tools/gpu_check.sh where there is no usable GPU: it must say why, exit 0 and take seconds, for
# each reason it checks (no nvidia-smi, nvidia-smi without a device, no nvcc). nvidia-smi and
# nvcc are faked or pointed away, so this never starts a build even on a GPU machine; the plain
# call, with nothing faked, runs only where there is no nvidia-smi.
# Usage: gpu_check_test.sh SOURCE_DIR OUT_DIR
set -u
src=$1 out=$2
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAIL: $*"; exit 1; }
check() {  # expected message, then the environment for the script
  local want=$1 start=$SECONDS
  shift
  env "$@" bash "$src/tools/gpu_check.sh" >"$out/log.txt" 2>&1
  local status=$? took=$((SECONDS - start))
  cat "$out/log.txt"
  ((status == 0)) || fail "exit $status, not 0 ($want)"
  ((took < 10)) || fail "took $took s, not < 10 ($want)"
  grep -qxF "gpu_check: no usable GPU here ($want); nothing to check" "$out/log.txt" || fail "no message: $want"
}
cat >"$out/no-device-smi" <<'SMI'
#!/bin/sh
echo "No devices were found"
exit 6
SMI
cat >"$out/h100-smi" <<'SMI'
#!/bin/sh
echo "NVIDIA H100 80GB HBM3, 9.0, 550.54.15, 81559 MiB"
SMI
chmod +x "$out/no-device-smi" "$out/h100-smi"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  check "nvidia-smi not found"
fi
check "$out/missing-smi not found" GPU_CHECK_NVIDIA_SMI="$out/missing-smi"
check "nvidia-smi found no device: No devices were found" GPU_CHECK_NVIDIA_SMI="$out/no-device-smi"
check "nvcc not found at $out/missing-nvcc (install the CUDA toolkit or set GPU_CHECK_NVCC)" \
  GPU_CHECK_NVIDIA_SMI="$out/h100-smi" GPU_CHECK_NVCC="$out/missing-nvcc"
echo "gpu_check without a GPU: ok"
