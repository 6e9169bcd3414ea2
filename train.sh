#!/usr/bin/env bash
# Reproduce the paper's tables on the embedded SmolLM2-135M-Instruct (30 layers, 9 heads of 64).
#
#   ./train.sh                 every experiment, one after the other
#   ./train.sh navigate        only the lines whose flags contain "navigate"
#   ./train.sh "optimizer random"
#   JOBS=2 ./train.sh          two lines at a time, each with one thread (OMP_NUM_THREADS = cores / JOBS);
#                              their output goes to runs/logs/line<N>.log, the "==" lines to the terminal
#
# Each line searches (4 initial points, the first the unedited model, + 120 iterations on 20 training
# examples), evaluates on held-out data, then copies the run's small files to results/
# (`python report.py --collect runs`). `python report.py` rebuilds results/summary.json, the tables in
# results/README.md and the plots from those files only. Settings follow the paper's recipe for its
# models: the first half of the layers (the paper: Llama-3-8B 0-16 of 32), +-pi/4, rotary, prob, mix.
# Every line of the paper's tables has its random-search control at the same budget (the studies
# beyond the paper, at the end, do not).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-.venv/bin/python}
ONLY=${1:-}
JOBS=${JOBS:-1}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "train.sh: error: JOBS must be a positive integer, got '$JOBS'" >&2; exit 2; }
if (( JOBS > 1 )); then
  cores=$(nproc)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / JOBS > 0 ? cores / JOBS : 1 ))}
  mkdir -p runs/logs
fi
FAILURES=$(mktemp)  # one line per failed experiment (lines running in the background cannot share an array)
trap 'rm -f "$FAILURES"' EXIT
LINE=0

run_now() {  # run_now LOG SCRIPT... -- FLAGS...: each script with the flags, then collect into results/
  local log=$1 scripts=() flags
  shift
  while [[ $1 != -- ]]; do scripts+=("$1"); shift; done
  shift
  flags=" $* "
  echo "== $(date +%T) ${scripts[*]}$flags${log:+ (output: $log)}"
  local start=$SECONDS script ok=1
  for script in "${scripts[@]}"; do
    if [[ -n $log ]]; then "$PY" "$script" "$@" >>"$log" 2>&1 || { ok=0; break; }
    else "$PY" "$script" "$@" || { ok=0; break; }; fi
  done
  if (( ok )) && "$PY" report.py --collect runs >/dev/null; then
    echo "== $(( SECONDS - start )) s: ${scripts[*]}$flags"
  else
    echo "== FAILED after $(( SECONDS - start )) s: ${scripts[*]}$flags"
    echo "${scripts[*]}$flags" >>"$FAILURES"
  fi
}
run_line() {  # run_line SCRIPT... -- FLAGS...: run now, or in the background when JOBS > 1
  local args=("$@")
  LINE=$(( LINE + 1 ))
  while [[ $1 != -- ]]; do shift; done
  shift
  [[ -z "$ONLY" || " $* " == *"$ONLY"* ]] || return 0
  if (( JOBS > 1 )); then
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
    run_now "runs/logs/line$LINE.log" "${args[@]}" &
  else
    run_now "" "${args[@]}"
  fi
}
barrier() { wait || true; }  # the lines below need the finished runs of the lines above
experiment() { run_line "$1" "$2" -- "${@:3}"; }    # experiment TRAIN_SCRIPT TEST_SCRIPT FLAGS...
evaluation() { run_line "$1" -- "${@:2}"; }         # evaluation TEST_SCRIPT FLAGS... (a finished search)

BASE=(--model smollm2 --layer 0 15 --angle_0 'neg 1/4' --angle_1 '1/4' --moduleType reasoning
      --initialPoints 4 --iterations 120 --seed 0)
SMOL=("${BASE[@]}" --rotationMethod rotary --trainingDataSize 20)

# Classification (BIG-bench), zero-shot and six-shot evaluation: the paper's Table 1
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset entailed_polarity --optimizer bo
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset entailed_polarity --optimizer random
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset navigate --optimizer bo
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset navigate --optimizer random
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset winowhy --optimizer bo
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset winowhy --optimizer random
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset color --optimizer bo
experiment trainRotation_NN_kernel.py evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset color --optimizer random
# Topic classification answered in words (ag_news needs the hub: offline, the four-domain review_topic)
experiment train_topic.py test_topic.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset review_topic --optimizer bo
experiment train_topic.py test_topic.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset review_topic --optimizer random
# Generation scored by a reward (zero-shot): positive sentiment, non-toxicity, summary ROUGE-L
experiment train_summarization.py test_summarization.py "${SMOL[@]}" --fewShotCategory zero --dataset imdb --optimizer bo
experiment train_summarization.py test_summarization.py "${SMOL[@]}" --fewShotCategory zero --dataset imdb --optimizer random
experiment train_summarization.py test_summarization.py "${SMOL[@]}" --fewShotCategory zero --dataset toxicity --optimizer bo
experiment train_summarization.py test_summarization.py "${SMOL[@]}" --fewShotCategory zero --dataset toxicity --optimizer random
experiment train_summarization.py test_summarization.py "${SMOL[@]}" --fewShotCategory zero --dataset xsum --optimizer bo
experiment train_summarization.py test_summarization.py "${SMOL[@]}" --fewShotCategory zero --dataset xsum --optimizer random

barrier
# Beyond the paper. Collateral damage: entailed_polarity's TaRot (the first line) on the other tasks' test
# sets (the same test examples as their own lines; the edit never saw those tasks)
evaluation evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset entailed_polarity --optimizer bo --evalDataset navigate
evaluation evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset entailed_polarity --optimizer bo --evalDataset winowhy
evaluation evaluateRotation.py "${SMOL[@]}" --metric prob --fewShotCategory mix --dataset entailed_polarity --optimizer bo --evalDataset color
# rotary (the first line) vs givens: 8,505 angles instead of 4,320
experiment trainRotation_NN_kernel.py evaluateRotation.py "${BASE[@]}" --trainingDataSize 20 --metric prob --fewShotCategory mix --dataset entailed_polarity --optimizer bo --rotationMethod givens
# Number of training examples on navigate (20: the navigate line above)
experiment trainRotation_NN_kernel.py evaluateRotation.py "${BASE[@]}" --rotationMethod rotary --metric prob --fewShotCategory mix --dataset navigate --optimizer bo --trainingDataSize 5
experiment trainRotation_NN_kernel.py evaluateRotation.py "${BASE[@]}" --rotationMethod rotary --metric prob --fewShotCategory mix --dataset navigate --optimizer bo --trainingDataSize 10
experiment trainRotation_NN_kernel.py evaluateRotation.py "${BASE[@]}" --rotationMethod rotary --metric prob --fewShotCategory mix --dataset navigate --optimizer bo --trainingDataSize 40

barrier
# once more after every line (lines run side by side each rebuilt it alone)
"$PY" report.py >/dev/null || echo "report.py (rebuilding results/)" >>"$FAILURES"
if [[ -s $FAILURES ]]; then
  sed 's/^/failed: /' "$FAILURES" >&2
  exit 1
fi

# The paper's own settings for its four models (need a GPU and the Hugging Face hub):
# python trainRotation_NN_kernel.py --model qwen_2 --layer 0 5 --angle_0 'neg 1/4' --angle_1 '1/4' --dataset color --moduleType reasoning --metric prob --fewShotCategory mix --trainingDataSize 20 --rotationMethod rotary
# python trainRotation_NN_kernel.py --model phi-3 --layer 0 6 --angle_0 'neg 1/4' --angle_1 '1/4' --dataset color --moduleType reasoning --metric prob --fewShotCategory mix --trainingDataSize 20 --rotationMethod givens
# python trainRotation_NN_kernel.py --model llama-3-8b --layer 0 16 --angle_0 'neg 1/6' --angle_1 '1/6' --dataset color --moduleType reasoning --metric prob --fewShotCategory mix --trainingDataSize 10 --rotationMethod rotary
# python trainRotation_NN_kernel.py --model mixtral --layer 0 16 --angle_0 'neg 1/6' --angle_1 '1/6' --dataset color --moduleType reasoning --metric prob --fewShotCategory mix --trainingDataSize 10 --rotationMethod rotary
# (then evaluateRotation.py with the same flags; the same for navigate, entailed_polarity, winowhy, ag_news)
