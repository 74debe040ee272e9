#!/usr/bin/env bash
# The same-backbone ladder from scratch: every rung's head on one small shared base
# (facedet/models/backbone.py, SmallBackbone width 32), the same photos (faces-caltech +
# faces-mask train), the same optimizer, schedule and number of images (1,320 steps of 32 =
# 42,240 images; crops for the classifier), then the benchmark's "same backbone" table on both
# validation sets. The configs are facedet/configs/same_<rung>.yaml.
#
#   FACEDET_DATA=/path/to/data bash benchmarks/train_same_backbone.sh [rung ...]
#   FACEDET_DATA=/path/to/data JOBS=2 bash benchmarks/train_same_backbone.sh      # two rungs at a time
#
# Rungs: classifier grid7 grid14 yolo ssd retinanet centernet faster_rcnn (default: all). Each writes
# runs/same_<rung>/ (best.pt, metrics.csv = its validation curve, training_chart.png) and its wall
# time to runs/same_backbone_times.txt. Wall times measured on a 2-core CPU (2026-12-02), two rungs at
# a time with one torch thread each (validation after every epoch included): centernet 43 min,
# retinanet 43, ssd 32, grid7 21, yolo 18, grid14 16, classifier 3 - about 1 h 40 min for the whole
# ladder with JOBS=2 (faster_rcnn not yet timed); the two benchmarks afterwards about 15 min.
set -euo pipefail
: "${FACEDET_DATA:?set FACEDET_DATA to the folder holding faces-caltech and faces-mask}"
export FACEDET_DATA
export FACES="$FACEDET_DATA/faces-caltech,$FACEDET_DATA/faces-mask"
JOBS=${JOBS:-1}
# one torch thread per rung when several share the CPU (they scale better side by side)
[ "$JOBS" -gt 1 ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

train_rung() {
  local rung=$1 start
  start=$(date +%s)
  echo "== same_$rung: python -m facedet.train --config same_$rung.yaml name=same_$rung data.root=$FACES"
  python -m facedet.train --config "same_$rung.yaml" "name=same_$rung" "data.root=$FACES" > "runs/same_$rung.log" 2>&1 \
    || { echo "same_$rung failed: see runs/same_$rung.log" >&2; return 1; }
  echo "same_$rung: $(( ($(date +%s) - start) / 60 )) min wall" | tee -a runs/same_backbone_times.txt
  # every rung's operating point by the same rule (best F1 on both validation sets), for the
  # benchmark's precision / recall-by-size table; the sliding window on 100 photos of each
  local some=()
  [ "$rung" = classifier ] && some=(--max-images 100)
  python -m facedet.calibrate --checkpoint "runs/same_$rung/best.pt" --data "$FACEDET_DATA/faces-caltech" \
    --data "$FACEDET_DATA/faces-mask" --rule f1 "${some[@]}" >> "runs/same_$rung.log" 2>&1
}
export -f train_rung

ALL=(faster_rcnn centernet retinanet ssd grid14 grid7 yolo classifier)  # longest first
rungs=("$@")
[ ${#rungs[@]} -gt 0 ] || rungs=("${ALL[@]}")
for rung in "${rungs[@]}"; do
  [[ " ${ALL[*]} " == *" $rung "* ]] || { echo "unknown rung '$rung'; expected some of: ${ALL[*]}" >&2; exit 2; }
done
mkdir -p runs
printf '%s\n' "${rungs[@]}" | xargs -P "$JOBS" -I{} bash -c 'train_rung {}'

# The sliding window scans ~1.8 s per photo: it is scored on the first 100 photos of each set.
for data in faces-caltech faces-mask; do
  python -m facedet.tools.benchmark --data "$FACEDET_DATA/$data" --ladder same --window-max-images 100 \
    --timing-images 10 --out "benchmark/$data-same-backbone"
done
