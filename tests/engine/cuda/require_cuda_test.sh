#!/usr/bin/env bash
# cuda_tests' entry point on a machine without a usable device: a plain run skips (exit 77,
# "SKIPPED: ..." with the reason), and with ENGINE_REQUIRE_CUDA=1 the same run fails (exit 1,
# "FAILED: ENGINE_REQUIRE_CUDA=1 ..." with the same reason), so a GPU machine that cannot run
# the suite is never green. Both print the CUDA versions first. Where a device is usable there
# is nothing to check here (exit 77: skipped).
# Usage: require_cuda_test.sh CUDA_TESTS_BINARY
set -u
bin=$1
fail() { echo "FAIL: $*"; exit 1; }
plain=$("$bin" --list-tests 2>&1)
status=$?
if ((status != 77)); then
  echo "SKIPPED: a CUDA device is usable here (cuda_tests exited $status): the GPU check runs the suite"
  exit 77
fi
echo "$plain" | head -1 | grep -q "^CUDA versions: driver " || fail "no versions line: $plain"
reason=$(echo "$plain" | sed -n 's/^SKIPPED: CUDA tests need a CUDA device: //p')
[[ -n $reason ]] || fail "no reason in the skip: $plain"
required=$(ENGINE_REQUIRE_CUDA=1 "$bin" --list-tests 2>&1)
status=$?
((status == 1)) || fail "ENGINE_REQUIRE_CUDA=1 exited $status, not 1: $required"
echo "$required" | grep -qxF "FAILED: ENGINE_REQUIRE_CUDA=1 but no CUDA device is usable: $reason" ||
  fail "ENGINE_REQUIRE_CUDA=1 did not name the reason: $required"
echo "cuda_tests without a device: skips, and fails under ENGINE_REQUIRE_CUDA=1 naming why: ok"
