#!/usr/bin/env bash
# moe-diagnose --report rendered in a real browser (headless chromium): the DOM after rendering
# holds every section and chart, for a 2-layer E = 8 run and a 12-layer E = 64 run, and a
# screenshot is taken. Without chromium the test reports itself skipped (exit 77).
# Usage: report_test.sh MOE_TRAIN MOE_DIAGNOSE SOURCE_DIR OUT_DIR
set -u
train=$1 diagnose=$2 src=$3 out=$4
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [[ -z $browser ]]; then
  echo "SKIPPED: the report test needs chromium (apt-get install chromium)"
  exit 77
fi
rm -rf "$out"
mkdir -p "$out"
fail() { echo "FAIL: $*"; exit 1; }

render() {  # render NAME: DOM to NAME.dom.html, screenshot to NAME.png
  local page="file://$out/$1.html"
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --dump-dom "$page" \
    >"$out/$1.dom.html" 2>"$out/$1.browser.log" || fail "chromium could not render $1.html"
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
    --window-size=1400,2600 --screenshot="$out/$1.png" "$page" >>"$out/$1.browser.log" 2>&1 ||
    fail "chromium could not take a screenshot of $1.html"
  [[ $(stat -c %s "$out/$1.png") -gt 20000 ]] || fail "$1.png is too small to show the report"
}

count() { grep -o "$1" "$out/$2.dom.html" | wc -l; }

# 1. collapse.yaml, shortened: two layers, eight experts, four domains.
"$train" --config "$src/configs/collapse.yaml" --set training.steps=80 --set logging.routing_trace_every=10 \
  --out "$out/collapse" >"$out/train.log" 2>&1 ||
  fail "training collapse.yaml"
"$diagnose" "$out/collapse/checkpoints/step_00000080.h5" --ep 4 --report "$out/collapse.html" --json "$out/collapse.json" \
  --compare "$out/collapse/checkpoints/step_00000080.h5" >"$out/diagnose.log" 2>&1
[[ $? -eq 3 ]] || fail "moe-diagnose should exit 3 for a collapsed run"
render collapse
for id in summary verdicts load devices history health similarity over-training domains spread compare; do
  grep -q "<section id=\"$id\"" "$out/collapse.dom.html" || fail "section $id missing from the rendered page"
done
for kind in load devices history grad-vs-load update-ratio similarity; do
  [[ $(count "class=\"chart\" data-kind=\"$kind\"" collapse) -eq 2 ]] || fail "expected 2 $kind charts"
done
# Gradient norm against load: one point per expert and layer; collapse.yaml's dead experts get
# no gradient and are drawn as vanishing; the update ratio has a line per expert.
[[ $(count "<circle class=\"point\"" collapse) -eq 16 ]] || fail "expected 16 experts in the gradient scatters"
grep -q "(vanishing)" "$out/collapse.dom.html" || fail "no expert flagged with a vanishing gradient"
grep -q "<polyline class=\"ratio\"" "$out/collapse.dom.html" || fail "no update-ratio line"
# The device view at --ep 4 and the report's 2, 4, 8: a slowdown column each.
for n in 2 4 8; do grep -q "<th>N = $n</th>" "$out/collapse.dom.html" || fail "no predicted slowdown for N = $n"; done
[[ $(count "<table class=\"domains\"" collapse) -eq 2 ]] || fail "expected 2 domain tables"
# Over training: one similarity chart and one churn chart (traces every 10 steps), a line per layer.
for kind in similarity-history churn; do
  [[ $(count "class=\"chart\" data-kind=\"$kind\"" collapse) -eq 1 ]] || fail "expected 1 $kind chart"
done
[[ $(count "<polyline data-layer=" collapse) -eq 4 ]] || fail "expected a line per layer in both over-training charts"
grep -q "routing churn (probe tokens whose top-1 expert changed" "$out/diagnose.log" || fail "no last churn in the text"
grep -q "collapsed" "$out/collapse.dom.html" || fail "the verdict is not on the page"
if command -v python3 >/dev/null; then
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['overall']=='collapsed' and len(d['layers'])==2" \
    "$out/collapse.json" || fail "the JSON output is not valid or incomplete"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['devices']['predicted'][0]; assert d['ranks']==4 and len(d['loads'])==2 and all(len(x)==4 for x in d['loads'])" \
    "$out/collapse.json" || fail "the JSON output has no device prediction for --ep 4"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['over_training']; assert len(d['churn_steps'])==8 and len(d['last_churn'])==2" \
    "$out/collapse.json" || fail "the JSON output has no routing churn per layer"
fi

# 1b. revival.yaml, shortened to two checks: the revivals are listed and marked on the
# load-over-training charts; the collapsed run above revived nothing and says so.
grep -q "No expert was revived during training" "$out/collapse.dom.html" || fail "collapse.html should say nothing was revived"
"$train" --config "$src/configs/revival.yaml" --set training.steps=60 --out "$out/revival" >>"$out/train.log" 2>&1 ||
  fail "training revival.yaml"
revivals=$(grep -c '"event": "revival"' "$out/revival/metrics.jsonl")
[[ $revivals -gt 0 ]] || fail "revival.yaml revived nothing in 60 steps"
"$diagnose" "$out/revival/checkpoints/step_00000060.h5" --batches 2 --report "$out/revival.html" >>"$out/diagnose.log" 2>&1
[[ $? -eq 0 || $? -eq 3 ]] || fail "moe-diagnose failed on the revival run"
render revival
grep -q '<section id="revivals"' "$out/revival.dom.html" || fail "section revivals missing"
[[ $(count '<td>copy_busiest</td>' revival) -eq $revivals ]] || fail "expected $revivals rows in the revivals table"
[[ $(count 'class="revival"' revival) -eq $revivals ]] || fail "expected $revivals revival marks on the charts"

# 2. Twelve MoE layers of 64 experts: every chart still drawn, one per layer.
"$train" --config "$src/configs/collapse.yaml" --set model.n_layers=12 --set moe.num_experts=64 --set moe.d_expert=8 \
  --set training.steps=6 --set logging.every=1 --out "$out/wide" >>"$out/train.log" 2>&1 || fail "training the wide model"
"$diagnose" "$out/wide/checkpoints/step_00000006.h5" --batches 2 --report "$out/wide.html" >>"$out/diagnose.log" 2>&1
[[ $? -eq 0 || $? -eq 3 ]] || fail "moe-diagnose failed on the wide model"
render wide
for kind in load devices history grad-vs-load update-ratio similarity; do
  [[ $(count "class=\"chart\" data-kind=\"$kind\"" wide) -eq 12 ]] || fail "expected 12 $kind charts for 12 layers"
done
grep -q "1/8</text>" "$out/wide.dom.html" || fail "the device charts of E = 64 should show 8 ranks by default"
grep -q "No routing churn" "$out/wide.dom.html" || fail "a run without routing traces should say so"
echo "PASS: report rendered by $("$browser" --version 2>/dev/null | head -1); screenshots in $out"
