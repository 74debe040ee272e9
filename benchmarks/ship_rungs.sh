#!/usr/bin/env bash
# Ship the trained rungs of the same-backbone ladder (and Viola-Jones) inside the package, so that
# facedet.load(NAME) and every chapter can use them: weights only, each with its operating point.
#
#   FACEDET_DATA=/path/to/data bash benchmarks/train_same_backbone.sh      # trains runs/same_<rung>/ and calibrates
#   FACEDET_DATA=/path/to/data bash benchmarks/train_ladder.sh viola_jones  # trains runs/viola_jones/
#   FACEDET_DATA=/path/to/data bash benchmarks/ship_rungs.sh [rung ...]
#   python -m facedet.tools.model_card                                      # the table MODEL_CARD.md quotes
# and stores every shipped detector's PR curve and recall by face size on the first 100 validation
# photos of each set in facedet/weights/results/<name>.json, which the chapters show.
#
# Rungs and the names they ship as (facedet/weights/<name>.pt): viola_jones, classifier (loads as a
# sliding window), grid7, grid14, yolo (-> yolo_face), ssd, retinanet, centernet. A rung whose run
# is missing is skipped with a message. Viola-Jones scans ~1.5 s per photo: it is calibrated on the
# first 100 photos of each validation set; the ladder's rungs were calibrated by train_same_backbone.sh.
set -euo pipefail
: "${FACEDET_DATA:?set FACEDET_DATA to the folder holding faces-caltech and faces-mask}"
declare -A SHIPPED_AS=([viola_jones]=viola_jones [classifier]=classifier [grid7]=grid7 [grid14]=grid14
                       [yolo]=yolo_face [ssd]=ssd [retinanet]=retinanet [centernet]=centernet)
rungs=("$@")
[ ${#rungs[@]} -gt 0 ] || rungs=(viola_jones classifier grid7 grid14 yolo ssd retinanet centernet)
for rung in "${rungs[@]}"; do
  name=${SHIPPED_AS[$rung]:?unknown rung $rung}
  run=runs/same_$rung/best.pt
  [ "$rung" = viola_jones ] && run=runs/viola_jones/best.pt
  [ -f "$run" ] || { echo "skipped $rung: no $run" >&2; continue; }
  python -m facedet.export --checkpoint "$run" --format weights --out "facedet/weights/$name.pt"
  if [ "$rung" = viola_jones ]; then
    python -m facedet.calibrate --checkpoint "facedet/weights/$name.pt" --rule f1 --max-images 100 \
      --data "$FACEDET_DATA/faces-caltech" --data "$FACEDET_DATA/faces-mask"
  fi
done
python -m facedet.tools.model_card
for set in faces-caltech faces-mask; do
  python -m facedet.tools.benchmark --data "$FACEDET_DATA/$set" --ladder shipped --max-images 100 \
    --results facedet/weights/results --out "benchmark/shipped-$set"
done
