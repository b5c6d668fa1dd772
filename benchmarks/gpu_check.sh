#!/usr/bin/env bash
# nwattn GPU check: the numba-cuda kernels on a machine with one NVIDIA GPU, in one go
# (under 8 minutes). Run from the repository root:
#
#   bash benchmarks/gpu_check.sh                 # everything, results in ./devcheck_out
#   OUT=/tmp/res bash benchmarks/gpu_check.sh    # results elsewhere
#   STEPS=smoke,correctness bash benchmarks/gpu_check.sh
#   DRY=1 bash benchmarks/gpu_check.sh           # check this script without a GPU
#
# Steps (names for STEPS in brackets):
#   1. [smoke]       environment and smoke test: numba-cuda compiles and runs a kernel with shared
#                    memory, syncthreads, libdevice's fast_expf and an inlined device function;
#   2. [correctness] the GPU path against the CPU path at nwattn's DEFAULT launch sizes (the test
#                    suite lowers them so that its tiny inputs span several blocks), every case run
#                    twice and required to repeat bit for bit;
#   3. [tests]       tests/test_cuda.py, test_cuda_learned.py, test_cuda_local.py and
#                    test_cuda_categorical.py on the GPU, simulator off;
#   4. [bench]       benchmarks/gpu_pool.py's cases against PyTorch's fused attention (float32, and
#                    bfloat16 rows labelled bf16), its dense baseline and KeOps when installed,
#                    with nwattn in float64 too and the pooling kernel timed alone;
#   5. [resources]   registers, local memory, shared memory and occupancy of every kernel variant
#                    built at the default launch sizes, and the SASS of the main pooling kernel;
#   6. [sanitizer]   compute-sanitizer racecheck, synccheck and memcheck on small launches, when
#                    compute-sanitizer is on the PATH and time is left.
#
# Results in $OUT: summary.txt (one OK / FAIL / TIME / SKIP line per step, with the key figures),
# log.txt (everything), env.txt, pytest.xml, bench.json, resources.txt, sanitizer.txt.
# Exit status: 0 when every step that ran passed, 1 otherwise.
#
# Needs numba, numba-cuda with a CUDA toolkit's NVVM and libdevice, numpy, scipy, scikit-learn,
# pytest and hypothesis on the GPU machine; pytest-xdist, pytest-timeout, torch and pykeops are
# used when present. nwattn is used from this checkout (PYTHONPATH), not from an installation.
# If numba-cuda fails the smoke test and ./.whl holds wheels (a numba-cuda or numpy that fits the
# machine), they are installed to $TMPDIR/nwattn_gpucheck/site and the smoke test is retried.
#
# Environment: PYTHON (interpreter; default .venv/bin/python if present, else python3),
# OUT, STEPS, DEVCHECK_SECONDS (overall time plan, default 450), DRY, CASES (comma-separated parts
# of the names of the correctness cases to run, e.g. CASES="gaussian float64"; default all).
# DRY=1 runs every step on tiny sizes under numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), with
# PyTorch and KeOps on the CPU and no compute-sanitizer, to check the script itself on a machine
# without a GPU; none of its timings mean anything.
set -u -o pipefail
START=$(date +%s)
REPO=$(pwd)
if [ ! -f "$REPO/nwattn/__init__.py" ] || [ ! -f "$REPO/benchmarks/gpu_check.py" ]; then
  echo "run this script from the root of the nwattn repository" >&2
  exit 2
fi
OUT=${OUT:-$REPO/devcheck_out}
WORK=${TMPDIR:-/tmp}/nwattn_gpucheck
mkdir -p "$OUT" "$WORK"
LOG=$OUT/log.txt
SUMMARY=$OUT/summary.txt
: > "$LOG"
: > "$SUMMARY"
TOTAL=${DEVCHECK_SECONDS:-450}        # wall-clock plan for everything, in seconds
DEADLINE=$((START + TOTAL))
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then
  PY=$REPO/.venv/bin/python
else
  PY=python3
fi
CHECK=$REPO/benchmarks/gpu_check.py
STEPS=${STEPS:-smoke,correctness,tests,bench,resources,sanitizer}
DRY=${DRY:-0}
FAILED=0
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$REPO:$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY" = 1 ]; then
  export NUMBA_ENABLE_CUDASIM=1
  QUICK=--quick
  DRYFLAG=--dry
  MIN_STEP=5
else
  unset NUMBA_ENABLE_CUDASIM
  QUICK=
  DRYFLAG=
  MIN_STEP=15
fi

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((DEADLINE - $(date +%s))); }
selected() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# The least time each step is planned to need (seconds of a 450 s plan, scaled to
# DEVCHECK_SECONDS): an earlier step leaves this much to the selected steps after it.
declare -A NEED=([smoke]=20 [correctness]=140 [tests]=95 [bench]=45 [resources]=40 [sanitizer]=0)
ORDER=(smoke correctness tests bench resources sanitizer)
reserve_after() {
  local after=0 sum=0 s
  for s in "${ORDER[@]}"; do
    if [ "$after" = 1 ] && selected "$s"; then sum=$((sum + NEED[$s])); fi
    [ "$s" = "$1" ] && after=1
  done
  echo $((sum * TOTAL / 450))
}

# step KEY NAME CAP CMD...: run CMD with a time limit of min(CAP, time left - the time planned
# for the selected steps after KEY); output appended to log.txt (and shown), status line in
# summary.txt. Returns CMD's exit status (99: skipped for lack of time).
step() {
  local key=$1 name=$2 cap=$3
  shift 3
  local t=$(( $(left) - $(reserve_after "$key") ))
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt "$MIN_STEP" ]; then
    say "SKIP  $name (only $(left)s left)"
    return 99
  fi
  echo "===== $name (limit ${t}s) =====" | tee -a "$LOG"
  local t0 rc dt
  t0=$(date +%s)
  timeout -k 10 "$t" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  dt=$(( $(date +%s) - t0 ))
  if [ "$rc" = 0 ]; then
    say "OK    $name (${dt}s)"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "TIME  $name stopped at its ${t}s limit"
    FAILED=1
  else
    say "FAIL  $name (exit $rc, ${dt}s)"
    FAILED=1
  fi
  return "$rc"
}
finish() {
  {
    echo
    echo "===== summary ($(( $(date +%s) - START ))s) ====="
    cat "$SUMMARY"
  } | tee -a "$LOG"
}
trap finish EXIT

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -u +%FT%TZ)   repo: $REPO   commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "DRY=$DRY  STEPS=$STEPS  plan ${TOTAL}s"
  uname -a
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
  else
    echo "nvidia-smi: not on the PATH"
  fi
  command -v nvcc >/dev/null && nvcc --version | tail -2
  echo "python: $($PY -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  $PY -m pip list 2>/dev/null | grep -i -E '^(numba|numba-cuda|llvmlite|numpy|scipy|scikit-learn|pytest|pytest-xdist|pytest-timeout|hypothesis|torch|pykeops|keopscore|cuda-|nvidia-)' || true
  for tool in compute-sanitizer nvdisasm cuobjdump; do
    echo "$tool: $(command -v $tool || echo 'not on the PATH')"
  done
} > "$OUT/env.txt" 2>&1
tee -a "$LOG" < "$OUT/env.txt"

# ---------------------------------------------------------------- 1. smoke test
if selected smoke; then
  if ! step smoke "1 smoke: numba-cuda compiles and runs a kernel" 90 \
      "$PY" "$CHECK" smoke $DRYFLAG; then
    if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
      say "      retrying with the wheels in .whl (installed to $WORK/site)"
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$REPO"/.whl/*.whl 2>&1 | tail -3 | tee -a "$LOG"
      export PYTHONPATH="$WORK/site:$PYTHONPATH"
      FAILED=0
      step smoke "1b smoke with the wheels in .whl" 90 "$PY" "$CHECK" smoke $DRYFLAG || {
        say "numba-cuda does not work on this machine: the other steps would say nothing"
        exit 1; }
    else
      say "numba-cuda does not work on this machine (see log.txt): the other steps would say"
      say "nothing. A numba-cuda (or numpy) wheel that fits the machine, put in ./.whl, is"
      say "installed and tried by the next run."
      exit 1
    fi
  fi
fi

# ---------------------------------------------------------------- 2. correctness, default sizes
if selected correctness; then
  step correctness "2 correctness at the default launch sizes (GPU vs CPU, repeat-identical)" \
    170 "$PY" "$CHECK" correctness $QUICK
  grep -E '^(FAIL|CORRECTNESS)' "$LOG" | sed 's/^/      /' >> "$SUMMARY"
fi

# ---------------------------------------------------------------- 3. the CUDA tests
if selected tests; then
  PYTEST_ARGS=(-q -ra -p no:cacheprovider -p gpu_check -o addopts= --durations=8
               "--junitxml=$OUT/pytest.xml")
  if [ "$DRY" = 1 ]; then
    # A few quick tests per module, enough to see that pytest finds and runs them.
    PYTEST_ARGS+=(-k "split_and_unsplit or device_input_validation or query_without or lambda_zero_empty or value_chunk_fits")
  elif $PY -c "import xdist" 2>/dev/null; then
    PYTEST_ARGS+=(-n 8)
  fi
  $PY -c "import pytest_timeout" 2>/dev/null && PYTEST_ARGS+=(--timeout=170)
  TESTS_LOG=$WORK/pytest_out.txt
  step tests "3 pytest tests/test_cuda*.py (simulator off)" 220 \
    bash -c 'set -o pipefail; "$@" 2>&1 | tee "'"$TESTS_LOG"'"' _ \
    "$PY" -m pytest "${PYTEST_ARGS[@]}" tests/test_cuda.py tests/test_cuda_learned.py \
    tests/test_cuda_local.py tests/test_cuda_categorical.py
  grep -E '^(FAILED|ERROR)|GPUCHECK|[0-9]+ (passed|failed)' "$TESTS_LOG" 2>/dev/null \
    | sed 's/^/      /' >> "$SUMMARY"
fi

# ---------------------------------------------------------------- 4. benchmark
if selected bench; then
  BENCH_T=$(( $(left) - $(reserve_after bench) - 20 ))
  [ "$BENCH_T" -gt 130 ] && BENCH_T=130
  [ "$BENCH_T" -lt 10 ] && BENCH_T=10
  step bench "4 benchmark: nwattn vs PyTorch SDPA (float32, bf16) and KeOps" \
    $((BENCH_T + 20)) "$PY" "$CHECK" bench "$BENCH_T" "$OUT/bench.json" $QUICK
  grep -E '^(gaussian|scaled_dot) ' "$LOG" | sed 's/^/      /' >> "$SUMMARY"
fi

# ---------------------------------------------------------------- 5. compiled resources
if selected resources; then
  step resources "5 registers / local memory / shared memory / occupancy per kernel" 60 \
    "$PY" "$CHECK" resources "$OUT/resources.txt" $QUICK
  grep -E 'spills/local|FAILED' "$OUT/resources.txt" 2>/dev/null | sed 's/^/      /' >> "$SUMMARY"
fi

# ---------------------------------------------------------------- 6. compute-sanitizer
if selected sanitizer; then
  : > "$OUT/sanitizer.txt"
  if [ "$DRY" = 1 ]; then
    # No sanitizer without a GPU: run its target plainly, under the simulator.
    step sanitizer "6 sanitizer target, plain run (DRY: no compute-sanitizer)" 60 \
      "$PY" "$CHECK" sanitize-target
  elif command -v compute-sanitizer >/dev/null; then
    for tool in racecheck synccheck memcheck; do
      step sanitizer "6 compute-sanitizer --tool $tool" 70 bash -c "set -o pipefail; \
        compute-sanitizer --tool $tool --print-limit 20 --error-exitcode 9 \
        '$PY' '$CHECK' sanitize-target 2>&1 | tee -a '$OUT/sanitizer.txt'" || true
    done
  else
    say "SKIP  6 compute-sanitizer (not on the PATH)"
  fi
fi
if [ "$DRY" != 1 ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu --format=csv,noheader \
    | sed 's/^/clocks, power, temperature at the end: /' | tee -a "$SUMMARY"
fi
exit "$FAILED"
