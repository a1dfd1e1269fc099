#!/usr/bin/env bash
# The paper's analyses on a trained quickstart supernet (CPU): Fig. 5 (correlation), Fig. 6 (KL vs
# accuracy), Fig. 7 (KL over training, if the run had callbacks=analysis), then Fig. 4 (dropout
# rate, scripts/dropout_study.sh) and one report page. Needs a supernet run with a search, e.g.
# `bash scripts/demo.sh` (demo/supernet) or train.py + search.py by hand.
#   RUN=demo/supernet bash scripts/studies.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUN=${RUN:-demo/supernet}               # supernet run: checkpoints/last.ckpt + search/random-seed0
CURVES_RUN=${CURVES_RUN:-$RUN}          # a run trained with callbacks=analysis (for Fig. 7)
OUT=${OUT:-$RUN/studies}
PICK_FROM=${PICK_FROM:-100}             # pick among the first N searched architectures
BUCKETS=${BUCKETS:-4}
PER_BUCKET=${PER_BUCKET:-2}
SEEDS=${SEEDS:-0,1}                     # stand-alone retraining seeds
EPOCHS=${EPOCHS:-3}                     # abbreviated stand-alone schedule
KL_ARCHS=${KL_ARCHS:-100}
DROPOUT=${DROPOUT:-1}                   # 0: skip the dropout sweep (3 more supernets)
STORE="$RUN/search/random-seed0/results.sqlite"
QUIET="trainer.enable_progress_bar=false"

echo "== Fig. 5: pick $BUCKETS x $PER_BUCKET architectures, retrain them (seeds $SEEDS), correlate"
$PY study.py study=correlation_pick study.store="$STORE" study.out_dir="$OUT/correlation" \
  study.num_buckets="$BUCKETS" study.per_bucket="$PER_BUCKET" study.num_archs="$PICK_FROM"
$PY train.py -m experiment=quickstart_standalone arch="$(paste -sd, "$OUT/correlation/picks.txt")" \
  seed="$SEEDS" trainer.max_epochs="$EPOCHS" hydra.sweep.dir="$OUT/standalone" $QUIET
$PY study.py study=correlation study.picks="$OUT/correlation/picks.json" \
  study.runs="[$OUT/standalone]"

echo "== Fig. 6: symmetrized KL vs one-shot accuracy of $KL_ARCHS searched architectures"
$PY study.py study=kl_accuracy experiment=quickstart study.ckpt="$RUN/checkpoints/last.ckpt" \
  study.out_dir="$OUT/kl_accuracy" study.num_archs="$KL_ARCHS"

DIRS="$OUT/correlation,$OUT/kl_accuracy"
if [ -f "$CURVES_RUN/analysis/kl_curves.json" ]; then
  echo "== Fig. 7: KL over training of the panel of $CURVES_RUN"
  $PY study.py study=kl_curves study.run="$CURVES_RUN" study.out_dir="$OUT/kl_curves"
  DIRS="$DIRS,$OUT/kl_curves"
fi
if [ "$DROPOUT" = 1 ]; then
  OUT="$OUT" PICK_FROM="$PICK_FROM" bash scripts/dropout_study.sh
  DIRS="$DIRS,$OUT/dropout"
fi

echo "== report"
$PY study.py study=report study.dirs="[$DIRS]" study.out_dir="$OUT"
