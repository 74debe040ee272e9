#!/usr/bin/env bash
# The recipe of the shipped face detector, facedet/weights/face_default.pt, end to end:
# train, strip the training state, calibrate the default threshold, benchmark.
#
#   FACEDET_DATA=/path/to/data bash benchmarks/ship_face_default.sh [train|ship|benchmark ...]
#
# Steps (default: all three, in order):
#   train      python -m facedet.train --config face_default.yaml (16 epochs, about 1 h 45 min
#              on a 2-core CPU; a GPU does it in minutes: the same command)
#   ship       last.pt (the end of the cosine schedule) without its optimizer state ->
#              facedet/weights/face_default.pt, then its operating point: the lowest score
#              that keeps precision >= 0.9 on both validation sets (python -m facedet.calibrate)
#   benchmark  python -m facedet.tools.benchmark on both validation sets (the ladder's runs when
#              present, the shipped detector, OpenCV's Haar cascade) -> benchmark/<set>/
set -euo pipefail
: "${FACEDET_DATA:?set FACEDET_DATA to the folder holding faces-caltech and faces-mask}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 2 cores: one torch thread, two data workers
SHIPPED=facedet/weights/face_default.pt

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(train ship benchmark)
for step in "${steps[@]}"; do
  case $step in
    train)
      python -m facedet.train --config face_default.yaml \
        "data.root=$FACEDET_DATA/faces-caltech,$FACEDET_DATA/faces-mask" ;;
    ship)
      python -m facedet.export --checkpoint runs/face_default/last.pt --format weights --out "$SHIPPED"
      python -m facedet.calibrate --checkpoint "$SHIPPED" --precision 0.9 \
        --data "$FACEDET_DATA/faces-caltech" --data "$FACEDET_DATA/faces-mask" ;;
    benchmark)
      export OMP_NUM_THREADS=2  # latency is reported with 2 threads
      for set in faces-caltech faces-mask; do
        python -m facedet.tools.benchmark --data "$FACEDET_DATA/$set" --out "benchmark/$set"
      done ;;
    *) echo "unknown step '$step' (expected train, ship or benchmark)" >&2; exit 2 ;;
  esac
done
