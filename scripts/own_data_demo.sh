#!/usr/bin/env bash
# Your own data end to end (make demo-own-data), on 2 CPU cores in a few minutes:
# 1. an image folder of Fashion-MNIST PNGs (scikit-learn's digits when Fashion-MNIST is not installed),
# 2. train a supernet on it, 3. search under a parameter budget and print the Pareto front,
# 4. retrain the best architecture under the budget, 5. export it (torch.export + ONNX) and
# 6. run the exported files in a fresh process that does not import this package.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-demo_own_data}
PER_CLASS=${PER_CLASS:-250}
MAX_PARAMS=${MAX_PARAMS:-50000}   # about the median child of this width: the budget cuts the space
NUM_ARCHS=${NUM_ARCHS:-300}
if [ -e "$OUT" ]; then  # keep an earlier demo's outputs: move them aside, never delete them
  OLD="$OUT.$(date +%Y%m%d-%H%M%S)"
  mv "$OUT" "$OLD"
  echo "earlier outputs of $OUT moved to $OLD"
fi
DATA=(dataset=image_folder dataset.root="$OUT/images" dataset.image_size=16)

echo "== 1/6 write an image folder ($PER_CLASS images per class)"
$PY scripts/make_image_folder.py "$OUT/images" --per-class "$PER_CLASS"
echo "   (${SECONDS}s)"
echo "== 2/6 train a supernet on it"
$PY train.py experiment=quickstart "${DATA[@]}" callbacks=default trainer.max_epochs=8 \
  hydra.run.dir="$OUT/supernet" trainer.enable_progress_bar=false
echo "   (${SECONDS}s)"
echo "== 3/6 score $NUM_ARCHS architectures of at most $MAX_PARAMS parameters (the checkpoint's data)"
$PY search.py ckpt="$OUT/supernet/checkpoints/last.ckpt" search.num_archs="$NUM_ARCHS" \
  search.max_params="$MAX_PARAMS"
SEARCH="$OUT/supernet/search/random-seed0"
echo "-- the Pareto front (one-shot accuracy against parameters and MACs): $SEARCH/pareto.csv"
$PY - "$SEARCH/pareto.csv" <<'PARETO'
import csv, sys
print(f"{'arch_id':>12} {'one-shot acc':>12} {'params':>8} {'MACs':>10}")
for r in csv.DictReader(open(sys.argv[1])):
    print(f"{r['arch_id']:>12} {float(r['oneshot_acc']):12.3f} {int(r['params']):8,} {int(r['macs']):10,}")
PARETO
echo "   (${SECONDS}s)"
echo "== 4/6 retrain the best architecture under the budget stand-alone"
BEST=$(ls "$SEARCH"/selections/top_0_*.json)
$PY train.py experiment=quickstart_standalone "${DATA[@]}" arch="$BEST" \
  hydra.run.dir="$OUT/standalone" trainer.enable_progress_bar=false
echo "   (${SECONDS}s)"
echo "== 5/6 export it"
$PY -m nas.export --ckpt "$OUT/standalone" --out "$OUT/export"
echo "   (${SECONDS}s)"
echo "== 6/6 run the exported files without this package"
$PY scripts/predict_exported.py "$OUT/export" "$OUT/images" --num 300
echo "own-data demo finished in ${SECONDS}s; outputs in $OUT/"
