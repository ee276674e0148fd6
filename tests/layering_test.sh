#!/usr/bin/env bash
# The source tree's layering, checked on #include lines: each rule names a folder and the folders
# it must not include from. A broken rule prints every offending file:line and fails the test.
#   engine/core  -> not engine/ops (the tape and tensor sit below the ops)
#   engine/cpu, engine/cuda, engine/dist -> not engine/ops (the backends and the communicator
#                the ops call sit below them)
#   engine/      -> not models/, data/, tools/
#   models/      -> not tools/, data/
#   data/        -> not models/, tools/
# Includes are written from the source root; a "../" include could slip past the rules, so none
# is allowed in these folders.
# Usage: layering_test.sh SOURCE_DIR
set -u
cd "${1:-.}" || exit 1
status=0

includes() {  # includes DIR PATTERN: the #include lines under DIR whose target matches PATTERN
  grep -rnE --include='*.h' --include='*.hpp' --include='*.cpp' --include='*.cc' --include='*.cu' \
    --include='*.cuh' "^[[:space:]]*#[[:space:]]*include[[:space:]]*$2" "$1"
}

forbid() {  # forbid DIR PREFIX...: no file under DIR includes "PREFIX..." (nor <PREFIX...>)
  local dir=$1
  shift
  local prefixes
  prefixes=$(IFS='|'; echo "$*")
  local hits
  hits=$(includes "$dir" "[\"<]($prefixes)")
  if [[ -n $hits ]]; then
    echo "FAIL: $dir must not include from: $*"
    echo "$hits"
    status=1
  fi
}

for dir in engine/core engine/cpu engine/cuda engine/dist engine models data; do
  [[ -d $dir ]] || { echo "FAIL: no folder $dir under $(pwd)"; exit 1; }
done
forbid engine/core engine/ops/
forbid engine/cpu engine/ops/
forbid engine/cuda engine/ops/
forbid engine/dist engine/ops/
forbid engine models/ data/ tools/
forbid models tools/ data/
forbid data models/ tools/
for dir in engine models data; do
  hits=$(includes "$dir" '"[^"]*\.\./')
  if [[ -n $hits ]]; then
    echo "FAIL: $dir includes by a relative \"../\" path (write it from the source root)"
    echo "$hits"
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "layering: all rules hold"
exit $status
