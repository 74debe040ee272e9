"""Close-up portraits (facedet.tools.portraits): how they are framed, and what counts as clean."""
import torch

from facedet.tools.portraits import Tally, is_clean, make_portraits, portrait_crop


def test_portrait_crop_by_hand():
    face = torch.tensor([100.0, 100.0, 200.0, 200.0])
    none = torch.zeros(0, 4)
    assert portrait_crop(face, none, 1000, 1000, 0.5).tolist() == [50, 50, 250, 250]
    # near the corner the crop shifts to stay inside: the face is no longer centred, still whole
    assert portrait_crop(face, none, 1000, 1000, 0.25).tolist() == [0, 0, 400, 400]
    assert portrait_crop(face, none, 300, 300, 0.25) is None  # a 400 px crop of a 300 px photo
    # another face inside the frame: no portrait; one outside it: no matter
    assert portrait_crop(face, torch.tensor([[240.0, 100.0, 280.0, 140.0]]), 1000, 1000, 0.5) is None
    assert portrait_crop(face, torch.tensor([[260.0, 100.0, 300.0, 140.0]]), 1000, 1000, 0.5) is not None


def test_portraits_put_the_face_where_it_is_in_each_size():
    image = torch.zeros(3, 400, 600)
    image[:, 100:200, 250:350] = 1.0  # the "face"
    faces = torch.tensor([[250.0, 100.0, 350.0, 200.0]])
    portraits = list(make_portraits([("toy", image, faces)], fills=(0.5,), sizes=(100, 320)))
    assert [(p.size, p.fill) for p in portraits] == [(100, 0.5), (320, 0.5)]
    for p in portraits:
        assert p.image.shape == (3, p.size, p.size)
        assert torch.allclose(p.face, torch.tensor([0.25, 0.25, 0.75, 0.75]) * p.size)
        x1, y1, x2, y2 = (int(v) for v in p.face)
        assert p.image[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2].min() > 0.9 and p.image[:, :y1 - 2].max() < 0.1


def test_clean_means_one_box_and_on_the_face():
    face = torch.tensor([10.0, 10.0, 110.0, 110.0])
    on, part, off = [10, 10, 110, 110], [10, 10, 60, 60], [200, 200, 300, 300]
    assert is_clean(torch.tensor([on], dtype=torch.float32), face) == (True, True)
    assert is_clean(torch.tensor([on, part], dtype=torch.float32), face) == (False, True)
    assert is_clean(torch.tensor([part], dtype=torch.float32), face) == (False, False)
    assert is_clean(torch.zeros(0, 4), face) == (False, False)
    tally = Tally()
    for boxes in ([on], [on, part], [off]):
        tally.add(torch.tensor(boxes, dtype=torch.float32), face)
    assert (tally.portraits, tally.clean, tally.found, tally.boxes) == (3, 1, 2, 4)
    assert tally.row("x") == "| x | 3 | 0.333 | 1.33 | 0.667 |"
