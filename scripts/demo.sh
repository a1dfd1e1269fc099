#!/usr/bin/env bash
# The method end to end on offline data (scikit-learn digits, CPU):
# 1. train a supernet, 2. score 300 architectures with it, 3. retrain the One-Shot Top and Random
# selections stand-alone (one Hydra multirun), 4. print the Table-1-style summary.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo}
NUM_ARCHS=${NUM_ARCHS:-300}
K=${K:-3}
if [ -e "$OUT" ]; then  # keep an earlier demo's outputs: move them aside, never delete them
  OLD="$OUT.$(date +%Y%m%d-%H%M%S)"
  mv "$OUT" "$OLD"
  echo "earlier outputs of $OUT moved to $OLD"
fi

echo "== 1/4 train the supernet"
$PY train.py experiment=quickstart hydra.run.dir="$OUT/supernet" trainer.enable_progress_bar=false
echo "   (${SECONDS}s)"
echo "== 2/4 score $NUM_ARCHS architectures"
$PY search.py experiment=quickstart ckpt="$OUT/supernet/checkpoints/last.ckpt" \
  search.num_archs="$NUM_ARCHS" selection.k="$K"
SEL="$OUT/supernet/search/random-seed0/selections"
echo "   (${SECONDS}s)"
echo "== 3/4 retrain One-Shot Top and Random stand-alone"
ARCHS=$(cat "$SEL/top.txt" "$SEL/random.txt" | paste -sd, -)
$PY train.py -m experiment=quickstart_standalone arch="$ARCHS" \
  hydra.sweep.dir="$OUT/standalone" trainer.enable_progress_bar=false
echo "   (${SECONDS}s)"
echo "== 4/4 Table 1 (quickstart)"
$PY -m nas.collect "$OUT/standalone" --json "$OUT/table1.json"
echo "demo finished in ${SECONDS}s; outputs in $OUT/"
