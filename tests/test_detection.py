"""Tests of dlkb.detection against torchvision (ops, BoxCoder, Matcher, AnchorGenerator) and pycocotools."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import ops
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from dlkb import detection as D

FORMATS = ["xyxy", "xywh", "cxcywh"]
PAIRWISE = [
    (D.box_iou, ops.box_iou),
    (D.generalized_box_iou, ops.generalized_box_iou),
    (D.distance_box_iou, ops.distance_box_iou),
    (D.complete_box_iou, ops.complete_box_iou),
]
LOSSES = [
    (D.giou_loss, ops.generalized_box_iou_loss),
    (D.diou_loss, ops.distance_box_iou_loss),
    (D.ciou_loss, ops.complete_box_iou_loss),
]

# Identical, nested, touching (shared edge), disjoint, a line and a point (zero area).
SPECIAL = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 10.0],
        [2.0, 3.0, 5.0, 6.0],
        [10.0, 0.0, 20.0, 10.0],
        [30.0, 30.0, 35.0, 42.0],
        [4.0, 1.0, 4.0, 9.0],
        [7.0, 7.0, 7.0, 7.0],
    ],
    dtype=torch.float64,
)


def random_boxes(n: int, generator: torch.Generator, dtype=torch.float64, scale: float = 50.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=dtype) * scale
    wh = torch.rand(n, 2, generator=generator, dtype=dtype) * scale / 2 + 0.5
    return torch.cat((xy, xy + wh), dim=1)


def noncontiguous(x: torch.Tensor) -> torch.Tensor:
    y = x.t().contiguous().t()
    assert not y.is_contiguous() and torch.equal(x, y)
    return y


# --------------------------------------------------------------------------- formats, area, IoU


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_box_convert_matches_torchvision(in_fmt, out_fmt, generator):
    boxes = random_boxes(9, generator)
    ours = D.box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(ours, ops.box_convert(boxes, in_fmt, out_fmt), rtol=0, atol=0)
    assert ours.data_ptr() != boxes.data_ptr()  # a copy even when the formats agree
    back = D.box_convert(ours, out_fmt, in_fmt)
    torch.testing.assert_close(back, boxes)


def test_box_convert_examples():
    box = torch.tensor([[1.0, 2.0, 5.0, 8.0]])
    torch.testing.assert_close(D.box_convert(box, "xyxy", "xywh"), torch.tensor([[1.0, 2.0, 4.0, 6.0]]))
    torch.testing.assert_close(D.box_convert(box, "xyxy", "cxcywh"), torch.tensor([[3.0, 5.0, 4.0, 6.0]]))
    assert D.box_convert(torch.zeros(0, 4), "xywh", "cxcywh").shape == (0, 4)


def test_box_area_matches_torchvision(generator):
    boxes = torch.cat((random_boxes(6, generator), SPECIAL))
    torch.testing.assert_close(D.box_area(boxes), ops.box_area(boxes))
    torch.testing.assert_close(D.box_area(noncontiguous(boxes)), ops.box_area(boxes))
    assert D.box_area(torch.zeros(0, 4)).shape == (0,)


@pytest.mark.parametrize("ours, ref", PAIRWISE, ids=lambda f: getattr(f, "__name__", ""))
def test_pairwise_iou_values_and_gradients_match_torchvision(ours, ref, generator):
    b1, b2 = random_boxes(7, generator), random_boxes(5, generator)
    b1[:3] = b2[:3] + 1.0  # some overlapping pairs
    x1, x2 = b1.clone().requires_grad_(), b1.clone().requires_grad_()
    y1, y2 = b2.clone().requires_grad_(), b2.clone().requires_grad_()
    out, expected = ours(x1, y1), ref(x2, y2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    weights = torch.rand(out.shape, generator=generator, dtype=out.dtype)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(y1.grad, y2.grad)


@pytest.mark.parametrize("ours, ref", PAIRWISE, ids=lambda f: getattr(f, "__name__", ""))
def test_pairwise_iou_special_cases_noncontiguous_and_empty(ours, ref):
    out = ours(noncontiguous(SPECIAL), SPECIAL)
    torch.testing.assert_close(out, ref(SPECIAL, SPECIAL), equal_nan=True)
    assert out[0, 0] == pytest.approx(1.0)  # identical boxes
    assert ours(torch.zeros(0, 4), SPECIAL.float()).shape == (0, len(SPECIAL))
    assert ours(SPECIAL, torch.zeros(0, 4, dtype=torch.float64)).shape == (len(SPECIAL), 0)


def test_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 2.0]])
    torch.testing.assert_close(D.box_iou(a, b), torch.tensor([[1 / 7, 0.0]]))
    # disjoint: IoU 0 but GIoU = 0 - (12 - 8) / 12
    torch.testing.assert_close(D.generalized_box_iou(a, b)[0, 1], torch.tensor(-1 / 3))


def test_pairwise_iou_gradcheck(generator):
    b1, b2 = random_boxes(4, generator), random_boxes(3, generator)
    b1[:2] = b2[:2] + 0.7
    for ours, _ in PAIRWISE:
        if ours is D.complete_box_iou:  # alpha is a constant (no_grad): compare with torchvision instead
            continue
        assert torch.autograd.gradcheck(ours, (b1.clone().requires_grad_(), b2.clone().requires_grad_()))


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("ours, ref", LOSSES, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [1e-7, 0.5])
def test_losses_match_torchvision(ours, ref, reduction, eps, generator):
    b1, b2 = random_boxes(8, generator), random_boxes(8, generator)
    b1[:4] = b2[:4] + torch.randn(4, 4, generator=generator, dtype=torch.float64)  # overlapping pairs
    b1[:4, 2:] = torch.maximum(b1[:4, 2:], b1[:4, :2] + 0.1)
    b1 = torch.cat((b1, SPECIAL[[0, 3, 2]]))
    b2 = torch.cat((b2, SPECIAL[[0, 0, 4]]))  # identical, touching, disjoint
    x1, x2 = b1.clone().requires_grad_(), b1.clone().requires_grad_()
    out = ours(noncontiguous(x1), b2, reduction=reduction, eps=eps)
    expected = ref(x2, b2, reduction=reduction, eps=eps)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("ours, ref", LOSSES, ids=lambda f: getattr(f, "__name__", ""))
def test_losses_on_empty_input_and_gradcheck(ours, ref, generator):
    empty = torch.zeros(0, 4, requires_grad=True)
    for reduction in ("none", "mean", "sum"):
        out = ours(empty, torch.zeros(0, 4), reduction=reduction)
        torch.testing.assert_close(out, ref(empty, torch.zeros(0, 4), reduction=reduction))
    ours(empty, torch.zeros(0, 4), reduction="mean").backward()  # no NaN, a zero gradient
    assert empty.grad.shape == (0, 4)
    if ours is not D.ciou_loss:
        b1, b2 = random_boxes(5, generator), random_boxes(5, generator)
        b1[:3] = b2[:3] + 0.5
        assert torch.autograd.gradcheck(lambda a: ours(a, b2, reduction="sum"), (b1.requires_grad_(),))


def test_giou_loss_has_gradient_where_iou_loss_has_none():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    target = torch.tensor([[5.0, 0.0, 7.0, 2.0]])
    (1 - D.box_iou(pred, target)).sum().backward()
    assert torch.all(pred.grad == 0)
    pred.grad = None
    D.giou_loss(pred, target).sum().backward()
    assert pred.grad[0, 2] < 0  # moving the right edge towards the target lowers the loss


# --------------------------------------------------------------------------- NMS


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision_with_ties(threshold, generator):
    for _ in range(10):
        boxes = random_boxes(120, generator, dtype=torch.float32)
        scores = torch.rand(120, generator=generator)
        scores[::7] = scores[0]  # tied scores: kept in input order
        torch.testing.assert_close(D.nms(boxes, scores, threshold), ops.nms(boxes, scores, threshold))
        idxs = torch.randint(0, 5, (120,), generator=generator)
        torch.testing.assert_close(
            D.batched_nms(boxes, scores, idxs, threshold), ops.batched_nms(boxes, scores, idxs, threshold)
        )


def test_nms_degenerate_noncontiguous_and_empty(generator):
    boxes = SPECIAL.float()
    scores = torch.linspace(1.0, 0.4, len(boxes))
    torch.testing.assert_close(D.nms(noncontiguous(boxes), scores, 0.5), ops.nms(boxes, scores, 0.5))
    torch.testing.assert_close(D.nms(boxes.double(), scores.double(), 0.0), ops.nms(boxes.double(), scores.double(), 0.0))
    empty = D.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.long and empty.shape == (0,)
    empty = D.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)
    assert empty.dtype == torch.long and empty.shape == (0,)


def test_batched_nms_never_suppresses_across_classes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8])
    assert D.nms(boxes, scores, 0.5).tolist() == [0]
    assert D.batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist() == [0, 1]


# --------------------------------------------------------------------------- coding, anchors, matching


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 4.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encode_decode_match_box_coder(weights, dtype, generator):
    gt, anchors = random_boxes(11, generator, dtype), random_boxes(11, generator, dtype)
    coder = BoxCoder(weights)
    codes = D.encode_boxes(gt, noncontiguous(anchors), weights=weights)
    torch.testing.assert_close(codes, coder.encode_single(gt, anchors), rtol=0, atol=0)
    torch.testing.assert_close(D.decode_boxes(codes, anchors, weights=weights), gt)
    rel = torch.randn(11, 4, generator=generator, dtype=dtype) * 5  # large enough to hit the clip
    for clip in (math.log(1000.0 / 16), 1.0):
        coder = BoxCoder(weights, bbox_xform_clip=clip)
        torch.testing.assert_close(
            D.decode_boxes(rel, anchors, weights=weights, bbox_xform_clip=clip),
            coder.decode_single(rel, anchors), rtol=0, atol=0,
        )
    assert D.encode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert D.decode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


def test_decode_gradient_matches_box_coder(generator):
    anchors = random_boxes(6, generator)
    rel = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    r1, r2 = rel.clone().requires_grad_(), rel.clone().requires_grad_()
    D.decode_boxes(r1, anchors, weights=(10.0, 10.0, 5.0, 5.0)).sum().backward()
    BoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(r2, anchors).sum().backward()
    torch.testing.assert_close(r1.grad, r2.grad)
    assert torch.autograd.gradcheck(lambda r: D.decode_boxes(r, anchors), (rel.requires_grad_(),))


@pytest.mark.parametrize(
    "feature_size, stride, sizes, ratios",
    [
        ((5, 7), 16, (32, 64, 128), (0.5, 1.0, 2.0)),
        ((3, 4), (8, 12), (13,), (0.7, 1.3)),
        ((2, 2), 4, (10.0, 21.0), (1.0,)),
        ((1, 1), 32, (33, 45), (0.25, 3.0)),  # odd sizes: rounding half to even matters
    ],
)
def test_anchor_grid_matches_anchor_generator(feature_size, stride, sizes, ratios):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    generator = AnchorGenerator(sizes=(tuple(sizes),), aspect_ratios=(tuple(ratios),))
    h, w = feature_size
    images = ImageList(torch.zeros(1, 1, h * sh, w * sw), [(h * sh, w * sw)])
    expected = generator(images, [torch.zeros(1, 1, h, w)])[0]
    torch.testing.assert_close(D.anchor_grid(feature_size, stride, sizes, ratios), expected, rtol=0, atol=0)


def test_anchor_grid_empty_feature_map():
    assert D.anchor_grid((0, 3), 8, (16,), (1.0,)).shape == (0, 4)


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("thresholds", [(0.7, 0.3), (0.5, 0.5), (0.6, 0.4)])
def test_match_anchors_matches_matcher(allow, thresholds, generator):
    high, low = thresholds
    for _ in range(5):
        iou = torch.rand(4, 40, generator=generator)
        iou[1, 7] = iou[1].max()  # a tie for a ground truth's best anchor
        iou[:, 9] = 0.0  # an anchor that overlaps nothing
        iou = torch.cat((iou, torch.full((1, 40), 0.05)))  # a ground truth that overlaps everything poorly
        expected = Matcher(high, low, allow_low_quality_matches=allow)(iou)
        assert torch.equal(D.match_anchors(iou, high_threshold=high, low_threshold=low,
                                           allow_low_quality_matches=allow), expected)


def test_match_anchors_empty():
    assert D.match_anchors(torch.zeros(0, 5)).tolist() == [-1] * 5  # no object: all background
    assert D.match_anchors(torch.zeros(3, 0)).shape == (0,)


# --------------------------------------------------------------------------- mean average precision


def random_scene(n_images: int, n_classes: int, generator: torch.Generator, *, ties: bool, bad_boxes: bool):
    preds, targets = [], []
    for _ in range(n_images):
        g = int(torch.randint(0, 6, (1,), generator=generator))
        gt = random_boxes(g, generator, torch.float32, scale=40.0)
        gt_labels = torch.randint(0, n_classes, (g,), generator=generator)
        d = int(torch.randint(0, 12, (1,), generator=generator))
        k = min(g, d)
        det = torch.cat((gt[:k] + 2 * torch.randn(k, 4, generator=generator), random_boxes(d - k, generator, torch.float32)))
        if not bad_boxes:
            det[:, 2:] = torch.maximum(det[:, 2:], det[:, :2] + 0.1)
        labels = torch.cat((gt_labels[:k], torch.randint(0, n_classes, (d - k,), generator=generator)))
        flip = torch.rand(d, generator=generator) < 0.2
        labels[flip] = torch.randint(0, n_classes, (int(flip.sum()),), generator=generator)
        scores = torch.rand(d, generator=generator)
        if ties:
            scores = scores.round(decimals=1)
        preds.append({"boxes": det, "scores": scores, "labels": labels})
        targets.append({"boxes": gt, "labels": gt_labels})
    return preds, targets


@pytest.mark.parametrize("ties, bad_boxes", [(False, False), (True, False), (True, True)])
def test_map_matches_pycocotools_on_random_scenes(ties, bad_boxes, generator):
    for _ in range(8):
        n_images = int(torch.randint(1, 12, (1,), generator=generator))
        preds, targets = random_scene(n_images, 4, generator, ties=ties, bad_boxes=bad_boxes)
        ours = D.mean_average_precision(preds, targets)
        expected = D.coco_reference_map(preds, targets)
        assert ours == pytest.approx(expected, abs=1e-12)


def test_map_tie_between_two_ground_truths_goes_to_the_later_one():
    # The first detection overlaps both ground truths equally (IoU 9/11); pycocotools gives it the
    # later one, which leaves the earlier one for the second detection at every threshold.
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    det = torch.tensor([[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    preds = [{"boxes": det, "scores": torch.tensor([0.9, 0.8]), "labels": torch.zeros(2, dtype=torch.long)}]
    targets = [{"boxes": gt, "labels": torch.zeros(2, dtype=torch.long)}]
    ours = D.mean_average_precision(preds, targets)
    assert ours == pytest.approx(D.coco_reference_map(preds, targets), abs=1e-12)
    assert ours["map_75"] == pytest.approx(1.0)


def test_map_more_than_100_detections_per_image(generator):
    gt = random_boxes(30, generator, torch.float32)
    targets = [{"boxes": gt, "labels": torch.zeros(30, dtype=torch.long)}]
    det = torch.cat([gt + torch.randn(30, 4, generator=generator) for _ in range(5)])  # 150 detections of one class
    preds = [{"boxes": det, "scores": torch.rand(150, generator=generator), "labels": torch.zeros(150, dtype=torch.long)}]
    assert D.mean_average_precision(preds, targets) == pytest.approx(D.coco_reference_map(preds, targets), abs=1e-12)


def test_map_perfect_empty_and_no_ground_truth():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    one = torch.tensor([1])
    perfect = D.mean_average_precision([{"boxes": box, "scores": torch.ones(1), "labels": one}],
                                       [{"boxes": box, "labels": one}])
    assert perfect == pytest.approx({"map": 1.0, "map_50": 1.0, "map_75": 1.0})  # 1 / (1 + 2^-52), as pycocotools
    no_dets = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
    missed = D.mean_average_precision(no_dets, [{"boxes": box, "labels": one}])
    assert missed == {"map": 0.0, "map_50": 0.0, "map_75": 0.0}
    assert D.coco_reference_map(no_dets, [{"boxes": box, "labels": one}]) == missed
    no_gt = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    expected = {"map": -1.0, "map_50": -1.0, "map_75": -1.0}
    assert D.mean_average_precision(no_dets, no_gt) == expected
    assert D.mean_average_precision([{"boxes": box, "scores": torch.ones(1), "labels": one}], no_gt) == expected
    assert D.mean_average_precision([], []) == expected


# --------------------------------------------------------------------------- data, detector, baseline


def test_make_digit_canvases(generator):
    digits = torch.rand(20, 1, 8, 8, generator=generator)
    labels = torch.arange(20) % 10
    images, targets = D.make_digit_canvases(digits, labels, 6, canvas_size=40, size_range=(8, 14),
                                            generator=generator)
    assert images.shape == (6, 1, 40, 40) and len(targets) == 6
    assert 0.0 <= images.min() and images.max() <= 1.0
    for t in targets:
        assert 1 <= len(t["boxes"]) <= 3 and t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.long
        sides = t["boxes"][:, 2:] - t["boxes"][:, :2]
        assert torch.all(sides[:, 0] == sides[:, 1]) and torch.all((sides >= 8) & (sides <= 14))
        assert t["boxes"].min() >= 0 and t["boxes"].max() <= 40
        iou = D.box_iou(t["boxes"], t["boxes"])
        assert torch.all(iou[~torch.eye(len(iou), dtype=torch.bool)] == 0)  # no two digits overlap
    again = D.make_digit_canvases(digits, labels, 6, canvas_size=40, size_range=(8, 14),
                                  generator=torch.Generator().manual_seed(0))
    first = D.make_digit_canvases(digits, labels, 6, canvas_size=40, size_range=(8, 14),
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], first[0])


def test_tiny_detector_learns_a_small_scene(generator):
    torch.manual_seed(0)
    digits = torch.zeros(2, 1, 8, 8)
    digits[0, 0, 1:7, 3:5] = 1.0  # a bar
    digits[1, 0, 2:6, 2:6] = 1.0  # a square
    images, targets = D.make_digit_canvases(digits, torch.tensor([0, 1]), 96, canvas_size=32, size_range=(8, 12),
                                            noise=0.0, generator=generator)
    model = D.TinyDetector(num_classes=2)
    assert model(images[:2]).shape == (2, 4, 4, 7)
    history = D.train_detector(model, images, targets, epochs=12, generator=generator)
    assert history[-1] < history[0] / 3
    preds = D.detect(model, images)
    assert D.mean_average_precision(preds, targets)["map_50"] > 0.5


def test_hog_svm_detector_runs_and_finds_objects(generator):
    digits = torch.zeros(2, 1, 8, 8)
    digits[0, 0, 1:7, 3:5] = 1.0
    digits[1, 0, 2:6, 2:6] = 1.0
    images, targets = D.make_digit_canvases(digits, torch.tensor([0, 1]), 40, canvas_size=32, size_range=(11, 15),
                                            noise=0.0, generator=generator)
    detector = D.HogSvmDetector(sizes=(11, 15)).fit(images, targets, generator=generator)
    for agnostic in (True, False):
        preds = detector.detect(images, class_agnostic=agnostic)
        assert len(preds) == 40 and all(len(p["boxes"]) <= 100 for p in preds)
        assert D.mean_average_precision(preds, targets)["map_50"] > 0.5


# --------------------------------------------------------------------------- validation


def test_box_validation_messages():
    with pytest.raises(TypeError, match=r"box_area: boxes must be a torch.Tensor; got list"):
        D.box_area([[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"box_area: boxes must have shape \(\*, 4\); got \(3, 5\)"):
        D.box_area(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"box_iou: boxes2 must have shape \(\*, 4\); got \(4,\)"):
        D.box_iou(torch.zeros(2, 4), torch.zeros(4))
    with pytest.raises(TypeError, match=r"generalized_box_iou: boxes1 must be a floating-point tensor; got dtype torch.int64"):
        D.generalized_box_iou(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"box_convert: in_fmt must be one of \('xyxy', 'xywh', 'cxcywh'\); got 'xyhw'"):
        D.box_convert(torch.zeros(1, 4), "xyhw", "xyxy")
    with pytest.raises(ValueError, match=r"box_convert: out_fmt must be one of"):
        D.box_convert(torch.zeros(1, 4), "xyxy", "yolo")
    with pytest.raises(ValueError, match=r"distance_box_iou: eps must be >= 0; got -1\.0"):
        D.distance_box_iou(torch.zeros(1, 4), torch.zeros(1, 4), eps=-1.0)


def test_loss_validation_messages():
    with pytest.raises(ValueError, match=r"giou_loss: boxes2 must have the same shape as boxes1 \(3, 4\); got \(1, 4\)"):
        D.giou_loss(torch.zeros(3, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"diou_loss: reduction must be one of \('none', 'mean', 'sum'\); got 'avg'"):
        D.diou_loss(torch.zeros(1, 4), torch.zeros(1, 4), reduction="avg")
    with pytest.raises(TypeError, match=r"ciou_loss: reduction must be a str"):
        D.ciou_loss(torch.zeros(1, 4), torch.zeros(1, 4), reduction=None)


def test_nms_validation_messages():
    with pytest.raises(ValueError, match=r"nms: scores must have shape \(3,\); got \(2,\)"):
        D.nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(TypeError, match=r"nms: iou_threshold must be a real number; got str"):
        D.nms(torch.zeros(3, 4), torch.zeros(3), "0.5")
    with pytest.raises(ValueError, match=r"batched_nms: idxs must have shape \(3,\); got \(4,\)"):
        D.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4, dtype=torch.long), 0.5)
    with pytest.raises(TypeError, match=r"batched_nms: idxs must be an integer tensor; got dtype torch.float32"):
        D.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), 0.5)


def test_coder_anchor_matcher_validation_messages():
    with pytest.raises(ValueError, match=r"encode_boxes: proposals must have the same shape as reference_boxes \(2, 4\); got \(3, 4\)"):
        D.encode_boxes(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"decode_boxes: weights must have 4 entries \(wx, wy, ww, wh\); got 2"):
        D.decode_boxes(torch.zeros(2, 4), torch.zeros(2, 4), weights=(1.0, 1.0))
    with pytest.raises(TypeError, match=r"decode_boxes: weights must be a tuple of 4 numbers; got float"):
        D.decode_boxes(torch.zeros(2, 4), torch.zeros(2, 4), weights=1.0)
    with pytest.raises(ValueError, match=r"encode_boxes: weights must be > 0; got 0\.0"):
        D.encode_boxes(torch.zeros(2, 4), torch.zeros(2, 4), weights=(1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"anchor_grid: stride must be >= 1; got 0"):
        D.anchor_grid((2, 2), 0, (16,), (1.0,))
    with pytest.raises(ValueError, match=r"anchor_grid: sizes must not be empty"):
        D.anchor_grid((2, 2), 8, (), (1.0,))
    with pytest.raises(ValueError, match=r"anchor_grid: aspect_ratios must be > 0; got -1\.0"):
        D.anchor_grid((2, 2), 8, (16,), (-1.0,))
    with pytest.raises(TypeError, match=r"anchor_grid: sizes must be a tuple or list of numbers; got int"):
        D.anchor_grid((2, 2), 8, 16, (1.0,))
    with pytest.raises(ValueError, match=r"match_anchors: low_threshold must be <= high_threshold 0.5; got 0.6"):
        D.match_anchors(torch.zeros(2, 3), high_threshold=0.5, low_threshold=0.6)
    with pytest.raises(ValueError, match=r"match_anchors: iou must be 2-D; got shape \(3,\)"):
        D.match_anchors(torch.zeros(3))
    with pytest.raises(TypeError, match=r"match_anchors: allow_low_quality_matches must be a bool; got int 1"):
        D.match_anchors(torch.zeros(2, 3), allow_low_quality_matches=1)


def test_map_validation_messages():
    box = torch.zeros(1, 4)
    pred = {"boxes": box, "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)}
    target = {"boxes": box, "labels": torch.zeros(1, dtype=torch.long)}
    with pytest.raises(ValueError, match=r"mean_average_precision: preds and targets must have one entry per image each; got 2 and 1"):
        D.mean_average_precision([pred, pred], [target])
    with pytest.raises(TypeError, match=r"mean_average_precision: preds must be a list of dicts \(one per image\); got dict"):
        D.mean_average_precision(pred, [target])
    with pytest.raises(TypeError, match=r"mean_average_precision: targets\[0\] must be a dict; got tuple"):
        D.mean_average_precision([pred], [(box,)])
    with pytest.raises(ValueError, match=r"mean_average_precision: preds\[0\] must have keys \('boxes', 'scores', 'labels'\); missing \['scores'\]"):
        D.mean_average_precision([target], [target])
    with pytest.raises(ValueError, match=r"mean_average_precision: preds\[0\]\['scores'\] must have shape \(1,\); got \(2,\)"):
        D.mean_average_precision([dict(pred, scores=torch.ones(2))], [target])
    with pytest.raises(TypeError, match=r"mean_average_precision: targets\[0\]\['labels'\] must be an integer tensor"):
        D.mean_average_precision([pred], [dict(target, labels=torch.zeros(1))])


def test_data_and_model_validation_messages():
    digits, labels = torch.rand(3, 1, 8, 8), torch.arange(3)
    with pytest.raises(ValueError, match=r"make_digit_canvases: size_range must satisfy smallest <= largest <= canvas_size 16; got \(8, 20\)"):
        D.make_digit_canvases(digits, labels, 2, canvas_size=16, size_range=(8, 20))
    with pytest.raises(ValueError, match=r"make_digit_canvases: labels must have shape \(3,\); got \(2,\)"):
        D.make_digit_canvases(digits, labels[:2], 2)
    with pytest.raises(TypeError, match=r"make_digit_canvases: generator must be a torch\.Generator; got int"):
        D.make_digit_canvases(digits, labels, 2, generator=0)
    with pytest.raises(ValueError, match=r"train_detector: targets must have one entry per image \(3\); got 1"):
        D.train_detector(D.TinyDetector(), torch.zeros(3, 1, 16, 16), [{}])
    with pytest.raises(ValueError, match=r"HogSvmDetector: window must be a multiple of 4; got 18"):
        D.HogSvmDetector(window=18)
    with pytest.raises(RuntimeError, match=r"HogSvmDetector.detect: call fit first"):
        D.HogSvmDetector().detect(torch.zeros(1, 1, 32, 32))



def test_detection_errors_sorts_mistakes_into_kinds():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [40.0, 0.0, 50.0, 10.0]])
    targets = [{"boxes": gt, "labels": torch.tensor([1, 2, 3])}]
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # correct
        [0.5, 0.0, 10.0, 10.0],  # duplicate of the first object
        [20.0, 20.0, 30.0, 30.0],  # wrong class (labelled 1)
        [40.0, 0.0, 44.0, 10.0],  # poor box of class 3 (IoU 0.4)
        [60.0, 60.0, 70.0, 70.0],  # background
        [0.0, 0.0, 10.0, 10.0],  # below the score threshold: ignored
    ])
    preds = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.55, 0.1]),
              "labels": torch.tensor([1, 1, 1, 3, 2, 2])}]
    counts, images = D.detection_errors(preds, targets, score_threshold=0.5)
    assert counts == {"correct": 1, "wrong class": 1, "poor box": 1, "duplicate": 1, "background": 1, "missed": 2}
    assert images == [0]
    perfect = [{"boxes": gt, "scores": torch.ones(3), "labels": torch.tensor([1, 2, 3])}]
    assert D.detection_errors(perfect, targets) == ({"correct": 3, "wrong class": 0, "poor box": 0, "duplicate": 0,
                                                     "background": 0, "missed": 0}, [])
    with pytest.raises(ValueError, match=r"detection_errors: preds and targets must have the same length; got 2 and 1"):
        D.detection_errors(perfect * 2, targets)


def test_draw_boxes_draws_one_patch_per_box():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 3.0, 3.0]])
    D.draw_boxes(ax, torch.zeros(1, 8, 8), boxes, torch.tensor([3, 4]), scores=torch.tensor([0.5, 0.25]))
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.texts] == ["3:0.50", "4:0.25"]
    plt.close(fig)


def test_hog_svm_margins_are_cached_per_tensor(generator):
    digits = torch.zeros(2, 1, 8, 8)
    digits[0, 0, 1:7, 3:5] = 1.0
    digits[1, 0, 2:6, 2:6] = 1.0
    images, targets = D.make_digit_canvases(digits, torch.tensor([0, 1]), 12, canvas_size=32, size_range=(11, 15),
                                            generator=generator)
    detector = D.HogSvmDetector(sizes=(11, 15)).fit(images, targets)
    boxes, margins = detector.margins(images)
    assert margins.shape == (12, boxes.shape[0], 3)
    assert detector.margins(images)[1] is margins
    other = images.clone()
    assert detector.margins(other)[1] is not margins
    torch.testing.assert_close(detector.margins(other)[1], margins)
    with pytest.raises(ValueError, match=r"HogSvmDetector: positive_iou must be in \[0\.3, 1\]; got 0\.2"):
        D.HogSvmDetector(positive_iou=0.2)
    with pytest.raises(TypeError, match=r"HogSvmDetector.detect: class_agnostic must be a bool; got str 'yes'"):
        detector.detect(images, class_agnostic="yes")
    with pytest.raises(ValueError, match=r"HogSvmDetector.fit: targets must have one entry per image \(12\); got 1"):
        detector.fit(images, targets[:1])


def test_tiny_detector_validation_messages():
    with pytest.raises(ValueError, match=r"TinyDetector: num_classes must be >= 1; got 0"):
        D.TinyDetector(num_classes=0)
    with pytest.raises(ValueError, match=r"TinyDetector: prior_size must be > 0; got 0\.0"):
        D.TinyDetector(prior_size=0.0)
    with pytest.raises(ValueError, match=r"TinyDetector: x must be 4-D; got shape \(1, 16, 16\)"):
        D.TinyDetector()(torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match=r"train_detector: epochs must be >= 1; got 0"):
        D.train_detector(D.TinyDetector(), torch.zeros(1, 1, 16, 16), [{}], epochs=0)


def test_half_precision_follows_torchvision(generator):
    b1 = random_boxes(7, generator, torch.float32).half()
    b2 = random_boxes(7, generator, torch.float32).half()
    for ours, ref in [(D.box_area, ops.box_area)]:
        assert torch.equal(ours(b1), ref(b1))
    for ours, ref in PAIRWISE + LOSSES:
        out, expected = ours(b1, b2), ref(b1, b2)
        assert out.dtype == expected.dtype == torch.float32  # upcast, as torchvision does
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
    converted = D.box_convert(b1, "xyxy", "cxcywh")
    assert converted.dtype == torch.float16 and torch.equal(converted, ops.box_convert(b1, "xyxy", "cxcywh"))


def test_detect_validation_messages():
    with pytest.raises(TypeError, match=r"detect: model must be TinyDetector; got Linear"):
        D.detect(torch.nn.Linear(2, 2), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"detect: score_threshold must be in \[0, 1\]; got 1\.5"):
        D.detect(D.TinyDetector(), torch.zeros(1, 1, 16, 16), score_threshold=1.5)
    assert D.detect(D.TinyDetector(), torch.zeros(0, 1, 16, 16)) == []
