# Shared by the GPU-machine scripts (gpu-check.sh, gpu-vulkan-check.sh): report lines and timed steps. Source it
# after setting OUT (a folder) and STEP_TIMEOUT (seconds per step); it starts $OUT/report.md and sets status=0.
report="$OUT/report.md"
: >"$report"
status=0
note() { echo "$*" | tee -a "$report"; }
# step NAME LOG CMD...: runs CMD with a time limit, appends its output to $OUT/LOG (few files: the device tool
# brings back at most 8), records pass/fail in the report.
step() {
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS rc
  echo "===== $name" >>"$OUT/$log"
  timeout "$STEP_TIMEOUT" "$@" >>"$OUT/$log" 2>&1
  rc=$?
  note "- $name: $([ $rc = 0 ] && echo PASS || echo "FAIL (exit $rc)") in $((SECONDS - t0)) s, log $log"
  [ $rc = 0 ] || status=1
  return $rc
}
# The gtest summary lines of the last step in $OUT/tests.log.
summary() {
  sed -n '/^===== /h;/^===== /!H;${x;p}' "$OUT/tests.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED) " | head -40 |
    tee -a "$report"
}
