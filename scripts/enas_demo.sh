#!/usr/bin/env bash
# ENAS end to end on offline data (scikit-learn digits, CPU), then the question that matters: is the
# derived architecture better than random ones of the same space, retrained with the same recipe?
# 1. train shared weights and controller, 2. derive: score 100 samples of the trained controller,
# 3. retrain the derived best and K random architectures stand-alone, 4. print the table.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_enas}
NUM_ARCHS=${NUM_ARCHS:-100}
K=${K:-5}
if [ -e "$OUT" ]; then  # keep an earlier demo's outputs: move them aside, never delete them
  OLD="$OUT.$(date +%Y%m%d-%H%M%S)"
  mv "$OUT" "$OLD"
  echo "earlier outputs of $OUT moved to $OLD"
fi

echo "== 1/4 train shared weights and controller (ENAS)"
$PY train.py experiment=quickstart_enas hydra.run.dir="$OUT/enas" trainer.enable_progress_bar=false
echo "   (${SECONDS}s)"
echo "== 2/4 derive: score $NUM_ARCHS samples of the trained controller"
$PY search.py experiment=quickstart_enas ckpt="$OUT/enas/checkpoints/last.ckpt" strategy=controller \
  search.num_archs="$NUM_ARCHS" selection.k="$K" selection.top=1
SEL="$OUT/enas/search/controller-seed0/selections"
echo "   (${SECONDS}s)"
echo "== 3/4 retrain the derived best and $K random architectures stand-alone"
ARCHS=$(cat "$SEL/top.txt" "$SEL/random.txt" | paste -sd, -)
$PY train.py -m experiment=quickstart_enas_standalone arch="$ARCHS" \
  hydra.sweep.dir="$OUT/standalone" trainer.enable_progress_bar=false
echo "   (${SECONDS}s)"
echo "== 4/4 derived vs random (stand-alone accuracy)"
$PY -m nas.collect "$OUT/standalone" --json "$OUT/table.json"
echo "ENAS demo finished in ${SECONDS}s; outputs in $OUT/"
