#!/usr/bin/env bash
# Fig. 4: train one quickstart supernet per constant path-dropout rate, score the same architectures
# with each (same search seed and count), and plot one-shot vs stand-alone accuracy per rate, using
# the stand-alone accuracies of a finished correlation study ($OUT/correlation/correlation.json,
# picked among the first $PICK_FROM architectures: see scripts/studies.sh).
#   OUT=demo/supernet/studies bash scripts/dropout_study.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo/supernet/studies}
RATES=${RATES:-1e-6,0.01,0.3}
SUPERNET_EPOCHS=${SUPERNET_EPOCHS:-15}
PICK_FROM=${PICK_FROM:-100}
QUIET="trainer.enable_progress_bar=false"

echo "== Fig. 4: supernets with constant dropout r in {$RATES}"
$PY train.py -m experiment=quickstart callbacks=default sampler.schedule=constant \
  sampler.rate="$RATES" trainer.max_epochs="$SUPERNET_EPOCHS" test_after_fit=false \
  hydra.sweep.dir="$OUT/supernets" $QUIET
STORES=()
for run in "$OUT"/supernets/*/; do
  $PY search.py experiment=quickstart ckpt="${run}checkpoints/last.ckpt" \
    search.num_archs="$PICK_FROM" selection.k=2
  STORES+=("${run}search/random-seed0/results.sqlite")
done
$PY study.py study=dropout study.stores="[$(IFS=,; echo "${STORES[*]}")]" \
  study.correlation="$OUT/correlation/correlation.json" study.out_dir="$OUT/dropout"
