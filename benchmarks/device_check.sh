#!/usr/bin/env bash
# The GPU check, as one short command: set up, a GPU smoke subset of the tests, training steps/s of QMIX, IPPO and
# DPO at 1, 8, 32 and 128 vmapped seeds, then the paper-scale presets `remix-predator-prey punishments=-2
# scale=paper` and `dpo-stochastic-game scale=paper` for as long as the budget allows (each stops with a checkpoint
# and continues when the script runs again). Every figure goes to one results file.
#
#   benchmarks/device_check.sh [--dry-run] [--budget SECONDS] [--results FILE] [--runs DIR]
#
#   --dry-run   the same steps at a tiny scale on any machine (the test suite runs it on CPU)
#   --budget    seconds for the whole script (default 540: a 10-minute device command with room to spare)
#   --results   the results file (default $OUT/device_check.md where OUT is set, else runs/device_check.md)
#   --runs      where the presets' run directories go (default runs/device; rerunning continues them)
#
# Setup: PYTHON (default: .venv/bin/python if there, else python3) must import jax, flax and optax. Wheels of the
# missing pure-Python dependencies in ./.whl (`make device-wheels`: flashbax, tensorboardX) are installed to /tmp/site
# first (on the lent GPU machine: carry `.whl`, run `bash benchmarks/device_check.sh`, read $OUT/device_check.md), and
# src/ is put on PYTHONPATH, so a machine without network needs no install of coopmarl itself. Where jax sees no
# GPU, the script tries `pip install -e .[cuda]` once (needs network) and says so if that fails.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
BUDGET=540
RESULTS=""
RUNS=runs/device
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --results) RESULTS="$2"; shift ;;
    --runs) RUNS="$2"; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown option $1 (valid: --dry-run, --budget SECONDS, --results FILE, --runs DIR)" >&2
       exit 2 ;;
  esac
  shift
done
case "$BUDGET" in ''|*[!0-9]*) echo "device_check.sh: --budget must be a whole number of seconds, got $BUDGET" >&2; exit 2 ;; esac
if [ -z "$RESULTS" ]; then RESULTS="${OUT:-runs}/device_check.md"; fi
mkdir -p "$(dirname "$RESULTS")" "$RUNS"
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "$*" | tee -a "$RESULTS"; }
section() { say ""; say "## $*"; say ""; }
# run a step with what is left of the budget (at most $1 seconds); Ctrl-C first, so a training run checkpoints
step() {
  local cap=$1; shift
  local t=$(( $(left) < cap ? $(left) : cap ))
  if [ "$t" -le 5 ]; then say "(skipped: the budget is spent) $*"; return 0; fi
  say '```'
  say "\$ $* (up to ${t}s)"
  local t0=$(date +%s)
  timeout -s INT -k 30 "$t" "$@" 2>&1 | grep -v "Submoduled environments\|Importing submoduled" | tee -a "$RESULTS"
  local rc=${PIPESTATUS[0]}
  say "(exit $rc after $(( $(date +%s) - t0 )) s$( [ "$rc" = 124 ] && echo ': stopped at its time limit; run the script again to continue' ))"
  say '```'
  return 0
}

: > "$RESULTS"
say "# Device check ($( [ $DRY = 1 ] && echo 'dry run, tiny scale' || echo 'full' ))"
say ""
say "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), budget ${BUDGET}s"
if ! "$PYTHON" -c 'import jax, flax, optax' 2>/dev/null; then
  say "$PYTHON cannot import jax, flax and optax: nothing to check"; exit 1
fi
if [ $DRY = 0 ] && ! "$PYTHON" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; then
  say "jax sees no GPU: trying pip install -e .[cuda]"
  "$PYTHON" -m pip install -q -e ".[cuda]" >/dev/null 2>&1 || say "(the install failed: no network, or no CUDA build for this machine)"
fi
"$PYTHON" - <<'PY' 2>&1 | grep -v "Submoduled\|Importing submoduled" | tee -a "$RESULTS"
import platform, jax, flax, optax
print(f"python {platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}")
print(f"backend {jax.default_backend()}: {', '.join(f'{d.device_kind}' for d in jax.devices())}")
PY

if [ $DRY = 1 ]; then
  SMOKE=(tests/test_actor_critics.py -k "by_hand or counterfactual_rows or sum_of_the_local")
  SEEDS=1,2; ITERS=1; BENCH_RUNS=qmix@climbing,dpo@climbing; SET=(--set n_envs=2)
  PP=(punishments=-2 algos=qmix seeds=1 steps=400)
  SG=(n_states=4 n_agents=2 n_actions=2 algos=dpo seeds=1 steps=128)
else
  SMOKE=(tests/test_actor_critics.py tests/test_ppo.py tests/test_value_based.py -k
         "optimum or monotonic or deterministic or gae or minibatch")
  SEEDS=1,8,32,128; ITERS=20; BENCH_RUNS=qmix@lbf:8x8-2p-2f-coop,ippo@mpe:spread,dpo@mpe:spread; SET=()
  PP=(punishments=-2 scale=paper)
  SG=(scale=paper)
fi

section "GPU smoke subset of the tests"
step 150 "$PYTHON" -m pytest -q -x -p no:cacheprovider "${SMOKE[@]}"

section "Training env steps/s by vmapped seeds"
step 240 "$PYTHON" benchmarks/seed_scaling.py --seeds "$SEEDS" --iters "$ITERS" --runs "$BENCH_RUNS" "${SET[@]}" \
  --json "$(dirname "$RESULTS")/seed_scaling.json"

# what is left, shared by the two presets (each resumes where an earlier run of this script stopped)
HALF=$(( $(left) / 2 ))
section "remix-predator-prey ${PP[*]}"
step "$HALF" "$PYTHON" -m coopmarl reproduce remix-predator-prey "${PP[@]}" --out "$RUNS/remix-predator-prey"
section "dpo-stochastic-game ${SG[*]}"
step "$(left)" "$PYTHON" -m coopmarl reproduce dpo-stochastic-game "${SG[@]}" --out "$RUNS/dpo-stochastic-game"

say ""
say "total $(( $(date +%s) - START )) s; results in $RESULTS"
