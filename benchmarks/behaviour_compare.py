"""Compare the OLD and NEW runs of one rung written by behaviour_check.sh: weights after 2 iterations, detections.

    python benchmarks/behaviour_compare.py OUT RUNG
"""
import json, sys
from pathlib import Path
import torch

root, name = Path(sys.argv[1]), sys.argv[2]
def load(side):
    try:
        return torch.load(root / side / "runs" / name / "last.pt", map_location="cpu", weights_only=False)
    except Exception as e:
        return None
old, new = load("old"), load("new")
if old is None or new is None:
    print(f"{name}: missing checkpoint old={old is not None} new={new is not None}"); sys.exit()
ko, kn = set(old["model"]), set(new["model"])
diff = max(((old["model"][k].float() - new["model"][k].float()).abs().max().item() for k in ko & kn if old["model"][k].is_floating_point()), default=float("nan"))
print(f"{name}: {len(ko)} / {len(kn)} tensors, same names: {ko == kn}, max |w_old - w_new| = {diff:.3g}")
def dets(path):
    try:
        data = json.loads(path.read_text())
    except Exception as e:
        return None
    return {Path(k).name: v for k, v in data.items()}
def cmp(a, b, label):
    if a is None or b is None:
        print(f"  {label}: missing json"); return
    worst, counts = 0.0, []
    for img in a:
        da, db = a[img], b.get(img, [])
        counts.append((len(da), len(db)))
        if len(da) == len(db) and da:
            # as sets of rows: detections of equal score may come in another order
            ta, tb = torch.tensor(sorted(map(tuple, da))), torch.tensor(sorted(map(tuple, db)))
            worst = max(worst, (ta - tb).abs().max().item())
    same = all(x == y for x, y in counts)
    print(f"  {label}: {sum(c[0] for c in counts)} vs {sum(c[1] for c in counts)} boxes on {len(a)} photos, "
          f"same counts per photo: {same}, largest difference between matching rows (box/score/label, as printed: 0.1 px, 1e-4 score): {worst:.3g}")
cmp(dets(root / "old" / f"{name}.json"), dets(root / "new" / f"{name}.json"), "old code+old weights vs new code+new weights")
cmp(dets(root / "old" / f"{name}.json"), dets(root / "new" / f"{name}.oldckpt.json"), "old code vs new code, same (old) weights")
