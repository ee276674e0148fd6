#!/usr/bin/env bash
# tools/balance_sweep.py on two methods, one seed, 120 steps of configs/collapse.yaml: the table
# has both initializations and both rows, the collapse-prone run without balancing collapses
# (load CV > 1, about 2 effective experts of 8) while forced balance is exactly balanced (CV 0,
# 8 effective experts, EP 4 predicted 1.00x), and the SVG has a line per method and panel.
# Usage: balance_sweep_test.sh SOURCE_DIR BIN_DIR OUT_DIR
set -u
src=$1 bin=$2 out=$3
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAIL: $*"; cat "$out/table.md" 2>/dev/null; exit 1; }
python3 "$src/tools/balance_sweep.py" --bin "$bin" --only none "forced balance" --seeds 1 --steps 120 \
  --out "$out/table.md" --svg "$out/sweep.svg" >"$out/log.txt" 2>&1 || { cat "$out/log.txt"; fail "the sweep failed"; }
row() { grep -A 5 "^\*\*$1 initialization" "$out/table.md" | grep "^| $2 |"; }
field() { row "$1" "$2" | awk -F'|' -v c="$3" '{gsub(/ /, "", $c); print $c}'; }
[[ -n $(row collapse-prone none) && -n $(row normal "forced balance") ]] || fail "a row is missing"
awk -v v="$(field collapse-prone none 4)" 'BEGIN { exit !(v > 1.0) }' || fail "no collapse without balancing"
awk -v v="$(field collapse-prone none 7)" 'BEGIN { exit !(v < 3.0) }' || fail "more than 3 effective experts in a collapse"
[[ $(field collapse-prone "forced balance" 4) == 0.00 ]] || fail "forced balance is not balanced"
[[ $(field collapse-prone "forced balance" 7) == 8.0 ]] || fail "forced balance has not 8 effective experts"
[[ $(field normal "forced balance" 8) == 1.00x ]] || fail "forced balance predicts an EP 4 imbalance"
[[ $(grep -c "<polyline" "$out/sweep.svg") -eq 4 ]] || fail "the SVG should have 2 methods x 2 panels"
echo "balance sweep: ok"
