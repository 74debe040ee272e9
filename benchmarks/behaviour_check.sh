#!/usr/bin/env bash
# Did a refactoring change what the ladder computes? Each seed-size rung is trained 2 iterations
# from the same seed by two checkouts of facedet (OLD and NEW), each runs its checkpoint on a
# few validation photos, and NEW also runs OLD's checkpoint; behaviour_compare.py then prints
# the largest weight difference and whether the detections agree box for box.
#
#   git worktree add --detach /tmp/old fd4eb55; git worktree add --detach /tmp/new HEAD
#   FACEDET_DATA=/path/to/data OLD=/tmp/old NEW=/tmp/new OUT=/tmp/behaviour bash benchmarks/behaviour_check.sh [rung ...]
#
# Rungs: classifier grid7 grid14 grid_cnn yolo_face ssd300_bccd fastai_ssd (default: all).
set -uo pipefail
: "${FACEDET_DATA:?}" "${OLD:?}" "${NEW:?}" "${OUT:?}"
D=$FACEDET_DATA
HERE=$(cd "$(dirname "$0")" && pwd)
config() { [ -d "$1/facedet/configs" ] && echo "$1/facedet/configs/$2" || echo "$1/configs/$2"; }
FACES="$D/faces-caltech,$D/faces-mask"
mkdir -p $OUT/photos $OUT/bccd_photos
ls $D/faces-caltech/images/val | head -12 | while read f; do cp -n $D/faces-caltech/images/val/$f $OUT/photos/; done
grep -v '^$' $D/bccd/ImageSets/Main/test.txt 2>/dev/null | head -8 | while read f; do cp -n $D/bccd/JPEGImages/$f.jpg $OUT/bccd_photos/; done
COMMON="train.max_iters=2 train.batch_size=4 train.val_every=0 data.num_workers=0 train.seed=0"
rungs=(
 "classifier|classifier.yaml|data.framing=both|photos"  # crops of the embedded synthetic set: cutting real crops takes 30 min
 "grid7|grid7.yaml|data.root=$FACES|photos"
 "grid14|grid14.yaml|data.root=$FACES|photos"
 "grid_cnn|grid_cnn.yaml|data.root=$FACES|photos"
 "yolo_face|yolo_face.yaml|data.root=$FACES|photos"
 "ssd300_bccd|ssd300_bccd.yaml|data.root=$D/bccd|bccd_photos"
 "fastai_ssd|fastai_ssd.yaml|data.root=$D/bccd|bccd_photos"
)
for spec in "${rungs[@]}"; do
  IFS='|' read name cfg over photos <<< "$spec"
  [ $# -gt 0 ] && [[ " $* " != *" $name "* ]] && continue
  for side in old new; do
    tree=$OLD; [ $side = new ] && tree=$NEW
    out=$OUT/$side; mkdir -p $out
    echo "== $side $name $(date +%T)"
    (cd $out && PYTHONPATH=$tree OMP_NUM_THREADS=2 nice python -m facedet.train --config $(config $tree $cfg) name=$name $over $COMMON > $out/$name.train.log 2>&1; echo "train rc $?")
    ck=$out/runs/$name/last.pt
    (cd $out && PYTHONPATH=$tree OMP_NUM_THREADS=2 nice python -m facedet.infer $OUT/$photos --checkpoint $ck --min-score 0.01 --no-save --json $out/$name.json > $out/$name.infer.log 2>&1; echo "infer rc $?")
  done
  # the new code on the old code's checkpoint (legacy loading)
  (cd $OUT/new && PYTHONPATH=$NEW OMP_NUM_THREADS=2 nice python -m facedet.infer $OUT/$photos --checkpoint $OUT/old/runs/$name/last.pt --min-score 0.01 --no-save --json $OUT/new/$name.oldckpt.json > $OUT/new/$name.oldinfer.log 2>&1; echo "legacy infer rc $?")
  python "$HERE/behaviour_compare.py" "$OUT" $name
done
