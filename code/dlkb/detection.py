r"""Object detection: box formats and IoU variants, box losses, non-maximum suppression,
anchors, matching and box encoding, COCO mean average precision, a synthetic detection
data set, a tiny one-stage detector and a sliding-window HOG + SVM baseline.

Shape letters: N and M numbers of boxes, G ground-truth boxes, A anchors, D detections,
K classes, B batch of images, H and W image (or feature-map) height and width, S the
side of the detector's output grid, T IoU thresholds, R recall points.

Boxes are floating-point Tensor[N, 4] in ``(x1, y1, x2, y2)`` pixels unless said otherwise;
a box's width is ``x2 - x1`` (no ``+ 1``, as in torchvision and COCO). Every box operation
equals a library function, which the tests and the chapter check it against:

- ``box_convert``, ``box_area``, ``box_iou``, ``generalized_box_iou``, ``distance_box_iou``,
  ``complete_box_iou``, ``nms``, ``batched_nms``: the ``torchvision.ops`` functions of the same names;
- ``giou_loss``, ``diou_loss``, ``ciou_loss``: ``torchvision.ops.generalized_box_iou_loss``,
  ``distance_box_iou_loss``, ``complete_box_iou_loss``;
- ``encode_boxes``, ``decode_boxes``: ``torchvision.models.detection._utils.BoxCoder``;
- ``anchor_grid``: ``torchvision.models.detection.anchor_utils.AnchorGenerator`` on one feature map;
- ``match_anchors``: ``torchvision.models.detection._utils.Matcher``;
- ``mean_average_precision``: ``pycocotools.cocoeval.COCOeval`` (bbox) ``stats[0:3]``.

Papers: Dalal & Triggs 2005 (HOG, sliding window); Felzenszwalb et al. 2010 (DPM, NMS);
Girshick et al. 2014 (R-CNN, box encoding, Appendix C); Girshick 2015 (Fast R-CNN);
Ren et al. 2015 (Faster R-CNN, anchors and the RPN's matching, Sec. 3.1.2);
Redmon et al. 2016 (YOLO, grid cells); Rezatofighi et al. 2019 (GIoU);
Zheng et al. 2020 (DIoU and CIoU); Lin et al. 2014 (COCO and its AP);
Everingham et al. 2010 (PASCAL VOC AP); Hoiem et al. 2012 (kinds of detection errors).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkb import _validate as _v
from dlkb.utils import eval_mode

__all__ = [
    "box_convert",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "giou_loss",
    "diou_loss",
    "ciou_loss",
    "nms",
    "batched_nms",
    "encode_boxes",
    "decode_boxes",
    "anchor_grid",
    "match_anchors",
    "mean_average_precision",
    "coco_reference_map",
    "make_digit_canvases",
    "TinyDetector",
    "grid_targets",
    "detector_loss",
    "detect",
    "train_detector",
    "HogSvmDetector",
    "detection_errors",
    "draw_boxes",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
REDUCTIONS = ("none", "mean", "sum")


# --------------------------------------------------------------------------- validation


def _boxes(name: str, value: object, caller: str) -> torch.Tensor:
    """A floating-point Tensor[N, 4]."""
    return _v.tensor(name, value, caller=caller, dtype="floating", shape=(None, 4))


def _up(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32, where torchvision upcasts (areas, widths), so results match it."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _pairwise_boxes(boxes1: object, boxes2: object, caller: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _boxes("boxes1", boxes1, caller), _boxes("boxes2", boxes2, caller)


def _paired_boxes(boxes1: object, boxes2: object, caller: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Tensor[N, 4] of the same N (a loss compares box i of one with box i of the other)."""
    b1, b2 = _pairwise_boxes(boxes1, boxes2, caller)
    _v.same_shape("boxes2", b2, caller=caller, like=b1, like_name="boxes1")
    return b1, b2


def _eps(eps: object, caller: str) -> float:
    return _v.real("eps", eps, caller=caller, low=0.0)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()  # an empty mean is 0, not NaN
    if reduction == "sum":
        return loss.sum()
    return loss


# --------------------------------------------------------------------------- formats, area, IoU


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    r"""Convert boxes between the corner and the centre formats.

    ``"xyxy"`` is :math:`(x_1, y_1, x_2, y_2)`, the top-left and bottom-right corners;
    ``"xywh"`` is :math:`(x_1, y_1, w, h)` (COCO's annotation format);
    ``"cxcywh"`` is :math:`(c_x, c_y, w, h)` (YOLO's and DETR's), with
    :math:`w = x_2 - x_1`, :math:`c_x = (x_1 + x_2)/2`. Like torchvision, a conversion between
    the two non-corner formats goes through ``"xyxy"``.

    Args:
        boxes (Tensor[N, 4]): floating-point boxes in ``in_fmt``.
        in_fmt: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.
        out_fmt: one of the same.

    Returns:
        Tensor[N, 4] in ``out_fmt`` (a copy, even when the formats are equal).
    """
    caller = "box_convert"
    boxes = _boxes("boxes", boxes, caller)
    _v.choice("in_fmt", in_fmt, caller=caller, choices=BOX_FORMATS)
    _v.choice("out_fmt", out_fmt, caller=caller, choices=BOX_FORMATS)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":  # (x1, y1, w, h) -> corners
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":  # (cx, cy, w, h) -> corners
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)  # [N, 4]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    r"""Area :math:`(x_2 - x_1)(y_2 - y_1)` of each box (negative for a box with :math:`x_2 < x_1`).

    Args:
        boxes (Tensor[N, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.

    Returns:
        Tensor[N].
    """
    boxes = _up(_boxes("boxes", boxes, "box_area"))
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise intersection and union areas, each Tensor[N, M]."""
    u1, u2 = _up(b1), _up(b2)
    area1 = (u1[:, 2] - u1[:, 0]) * (u1[:, 3] - u1[:, 1])  # [N]
    area2 = (u2[:, 2] - u2[:, 0]) * (u2[:, 3] - u2[:, 1])  # [M]
    top_left = torch.max(b1[:, None, :2], b2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(b1[:, None, 2:], b2[None, :, 2:])  # [N, M, 2]
    wh = _up(bottom_right - top_left).clamp(min=0)  # [N, M, 2]; no overlap -> 0
    inter = wh[..., 0] * wh[..., 1]  # [N, M]
    return inter, area1[:, None] + area2[None, :] - inter


def _enclosing_wh(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Width and height of the smallest box enclosing each pair: Tensor[N, M, 2]."""
    top_left = torch.min(b1[:, None, :2], b2[None, :, :2])
    bottom_right = torch.max(b1[:, None, 2:], b2[None, :, 2:])
    return _up(bottom_right - top_left).clamp(min=0)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    r"""Pairwise intersection over union :math:`|A \cap B| / |A \cup B|` (the Jaccard index).

    Two boxes of zero area give :math:`0/0 = \mathrm{NaN}`, as in torchvision.

    Args:
        boxes1 (Tensor[N, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.
        boxes2 (Tensor[M, 4]): the same.

    Returns:
        Tensor[N, M], entry ``(i, j)`` the IoU of ``boxes1[i]`` and ``boxes2[j]``.
    """
    b1, b2 = _pairwise_boxes(boxes1, boxes2, "box_iou")
    inter, union = _inter_union(b1, b2)
    return inter / union


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    r"""Pairwise generalized IoU (Rezatofighi et al. 2019, Alg. 1).

    .. math:: \mathrm{GIoU} = \mathrm{IoU} - \frac{|C| - |A \cup B|}{|C|},

    with :math:`C` the smallest box enclosing :math:`A` and :math:`B`. It lies in
    :math:`(-1, 1]` and keeps decreasing as disjoint boxes move apart, where the IoU stays 0.

    Args:
        boxes1 (Tensor[N, 4]), boxes2 (Tensor[M, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.

    Returns:
        Tensor[N, M].
    """
    b1, b2 = _pairwise_boxes(boxes1, boxes2, "generalized_box_iou")
    inter, union = _inter_union(b1, b2)
    wh = _enclosing_wh(b1, b2)  # [N, M, 2]
    area_c = wh[..., 0] * wh[..., 1]  # [N, M]
    return inter / union - (area_c - union) / area_c


def _diou_iou(b1: torch.Tensor, b2: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise DIoU and IoU, each Tensor[N, M]."""
    inter, union = _inter_union(b1, b2)
    iou = inter / union
    wh = _enclosing_wh(b1, b2)
    diagonal2 = wh[..., 0] ** 2 + wh[..., 1] ** 2 + eps  # c^2, squared diagonal of the enclosing box
    c1 = (b1[:, :2] + b1[:, 2:]) / 2  # [N, 2] centres
    c2 = (b2[:, :2] + b2[:, 2:]) / 2  # [M, 2]
    rho2 = (c1[:, None, 0] - c2[None, :, 0]) ** 2 + (c1[:, None, 1] - c2[None, :, 1]) ** 2  # [N, M]
    return iou - rho2 / diagonal2, iou


def distance_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    r"""Pairwise distance IoU (Zheng et al. 2020, Eq. (6)).

    .. math:: \mathrm{DIoU} = \mathrm{IoU} - \frac{\rho^2(\mathbf b, \mathbf b^{gt})}{c^2},

    :math:`\rho` the distance between the two centres and :math:`c` the diagonal of the
    enclosing box (``eps`` is added to :math:`c^2`).

    Args:
        boxes1 (Tensor[N, 4]), boxes2 (Tensor[M, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.
        eps: added to :math:`c^2` against a division by zero.

    Returns:
        Tensor[N, M].
    """
    caller = "distance_box_iou"
    b1, b2 = _pairwise_boxes(boxes1, boxes2, caller)
    return _diou_iou(_up(b1), _up(b2), _eps(eps, caller))[0]


def _aspect_term(w1: torch.Tensor, h1: torch.Tensor, w2: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    r"""The aspect-ratio term of CIoU (Zheng et al. 2020, Eq. (9)).

    :math:`v = \frac{4}{\pi^2}(\arctan\frac{w^{gt}}{h^{gt}} - \arctan\frac{w}{h})^2`.
    """
    return (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2


def complete_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    r"""Pairwise complete IoU (Zheng et al. 2020, Eqs. (9)-(11)).

    .. math:: \mathrm{CIoU} = \mathrm{DIoU} - \alpha v, \qquad
        \alpha = \frac{v}{(1 - \mathrm{IoU}) + v},

    with :math:`v` the aspect-ratio term. As in the paper (and torchvision), :math:`\alpha` is a
    trade-off weight treated as a constant: no gradient flows through it. ``eps`` is added to
    :math:`c^2` and to the denominator of :math:`\alpha`.

    Args:
        boxes1 (Tensor[N, 4]), boxes2 (Tensor[M, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.
        eps: small number against divisions by zero.

    Returns:
        Tensor[N, M].
    """
    caller = "complete_box_iou"
    b1, b2 = _pairwise_boxes(boxes1, boxes2, caller)
    b1, b2 = _up(b1), _up(b2)
    eps = _eps(eps, caller)
    diou, iou = _diou_iou(b1, b2, eps)
    w1, h1 = (b1[:, 2] - b1[:, 0])[:, None], (b1[:, 3] - b1[:, 1])[:, None]  # [N, 1]
    w2, h2 = b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1]  # [M]
    v = _aspect_term(w2, h2, w1, h1)  # [N, M]; the square makes the order irrelevant
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


# --------------------------------------------------------------------------- box losses


def _paired_inter_union(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Intersection and union of box i of ``b1`` with box i of ``b2``, and the enclosing box's corners."""
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    iw, ih = torch.min(x2, x2g) - torch.max(x1, x1g), torch.min(y2, y2g) - torch.max(y1, y1g)  # [N]
    overlap = (iw > 0) & (ih > 0)
    inter = torch.where(overlap, iw * ih, torch.zeros_like(iw))  # no gradient where they do not overlap
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    enclosing = (torch.min(x1, x1g), torch.min(y1, y1g), torch.max(x2, x2g), torch.max(y2, y2g))
    return inter, union, enclosing


def _check_loss_args(boxes1, boxes2, reduction, eps, caller):
    b1, b2 = _paired_boxes(boxes1, boxes2, caller)
    _v.choice("reduction", reduction, caller=caller, choices=REDUCTIONS)
    return _up(b1), _up(b2), _eps(eps, caller)


def giou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, *, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    r"""GIoU loss :math:`1 - \mathrm{GIoU}` of box i of ``boxes1`` against box i of ``boxes2``.

    Rezatofighi et al. 2019, Alg. 2; ``eps`` is added to the union and to the enclosing area.
    In :math:`[0, 2)`; unlike :math:`1 - \mathrm{IoU}` its gradient is not zero for disjoint boxes.

    Args:
        boxes1 (Tensor[N, 4]): predicted ``(x1, y1, x2, y2)`` boxes.
        boxes2 (Tensor[N, 4]): target boxes, same shape (no broadcasting).
        reduction: ``"none"`` (Tensor[N]), ``"mean"`` or ``"sum"`` (scalars; the mean of nothing is 0).
        eps: small number against divisions by zero.
    """
    b1, b2, eps = _check_loss_args(boxes1, boxes2, reduction, eps, "giou_loss")
    inter, union, (xc1, yc1, xc2, yc2) = _paired_inter_union(b1, b2)
    iou = inter / (union + eps)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    return _reduce(1 - (iou - (area_c - union) / (area_c + eps)), reduction)


def _diou_loss_iou(b1: torch.Tensor, b2: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    inter, union, (xc1, yc1, xc2, yc2) = _paired_inter_union(b1, b2)
    iou = inter / (union + eps)
    diagonal2 = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    centre1, centre2 = (b1[:, :2] + b1[:, 2:]) / 2, (b2[:, :2] + b2[:, 2:]) / 2  # [N, 2]
    rho2 = (centre1[:, 0] - centre2[:, 0]) ** 2 + (centre1[:, 1] - centre2[:, 1]) ** 2
    return 1 - iou + rho2 / diagonal2, iou


def diou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, *, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    r"""DIoU loss :math:`1 - \mathrm{IoU} + \rho^2 / c^2` of paired boxes (Zheng et al. 2020, Eq. (7)).

    ``eps`` is added to the union and to :math:`c^2`. Arguments and return as :func:`giou_loss`.
    """
    b1, b2, eps = _check_loss_args(boxes1, boxes2, reduction, eps, "diou_loss")
    return _reduce(_diou_loss_iou(b1, b2, eps)[0], reduction)


def ciou_loss(
    boxes1: torch.Tensor, boxes2: torch.Tensor, *, reduction: str = "none", eps: float = 1e-7
) -> torch.Tensor:
    r"""CIoU loss :math:`1 - \mathrm{IoU} + \rho^2/c^2 + \alpha v` of paired boxes (Zheng et al. 2020, Eq. (10)).

    :math:`\alpha` is held constant (no gradient), as the paper prescribes. As in torchvision,
    ``eps`` enters only the denominator of :math:`\alpha`; the DIoU part always uses
    :math:`10^{-7}`. Arguments and return as :func:`giou_loss`.
    """
    b1, b2, eps = _check_loss_args(boxes1, boxes2, reduction, eps, "ciou_loss")
    loss, iou = _diou_loss_iou(b1, b2, 1e-7)
    v = _aspect_term(b1[:, 2] - b1[:, 0], b1[:, 3] - b1[:, 1], b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1])
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(loss + alpha * v, reduction)


# --------------------------------------------------------------------------- non-maximum suppression


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    r"""Greedy non-maximum suppression.

    Visit the boxes from the highest score down (ties keep their input order); keep a box
    unless a box kept before it overlaps it with IoU ``> iou_threshold``. The IoU matrix is
    computed once; the loop runs over kept boxes only. The comparison is made in float64, as
    torchvision's kernel compares its float IoU with a ``double`` threshold. A pair of zero-area
    boxes has IoU NaN and never suppresses.

    Args:
        boxes (Tensor[N, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N]): their scores.
        iou_threshold: boxes overlapping a kept box by more than this are dropped.

    Returns:
        Tensor[K] of int64: indices of the kept boxes, by decreasing score.
    """
    caller = "nms"
    boxes = _boxes("boxes", boxes, caller)
    scores = _v.tensor("scores", scores, caller=caller, dtype="floating", shape=(boxes.shape[0],))
    iou_threshold = _v.real("iou_threshold", iou_threshold, caller=caller, finite=False)
    return _nms(boxes, scores, iou_threshold)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices  # [N]
    b = boxes[order]
    inter, union = _inter_union(b, b)
    overlaps = (inter / union).double() > iou_threshold  # [N, N], row i: which boxes i suppresses
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    while bool(alive.any()):
        i = int(torch.argmax(alive.to(torch.uint8)))  # the best-scoring box still alive
        keep.append(i)
        alive &= ~overlaps[i]
        alive[i] = False
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    r"""Non-maximum suppression within each category: boxes of different ``idxs`` never suppress each other.

    Uses the coordinate trick of torchvision (for up to 1,000 boxes on the CPU, where torchvision
    uses it too): shift every box by ``idx * (max coordinate + 1)`` so that boxes of different
    categories cannot overlap, then run one :func:`nms`.

    Args:
        boxes (Tensor[N, 4]): floating-point ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N]): their scores.
        idxs (Tensor[N]): integer category of each box.
        iou_threshold: as in :func:`nms`.

    Returns:
        Tensor[K] of int64: indices of the kept boxes, by decreasing score.
    """
    caller = "batched_nms"
    boxes = _boxes("boxes", boxes, caller)
    n = boxes.shape[0]
    scores = _v.tensor("scores", scores, caller=caller, dtype="floating", shape=(n,))
    idxs = _v.tensor("idxs", idxs, caller=caller, dtype="integer", shape=(n,))
    iou_threshold = _v.real("iou_threshold", iou_threshold, caller=caller, finite=False)
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)  # [N]
    return _nms(boxes + offsets[:, None], scores, iou_threshold)


# --------------------------------------------------------------------------- box coding, anchors, matching


def _weights(weights: object, caller: str) -> tuple[float, float, float, float]:
    if not isinstance(weights, (tuple, list)):
        raise TypeError(f"{caller}: weights must be a tuple of 4 numbers; got {type(weights).__name__}")
    if len(weights) != 4:
        raise ValueError(f"{caller}: weights must have 4 entries (wx, wy, ww, wh); got {len(weights)}")
    return tuple(_v.real("weights", w, caller=caller, low=0.0, low_open=True) for w in weights)


def encode_boxes(
    reference_boxes: torch.Tensor,
    proposals: torch.Tensor,
    *,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    r"""Regression targets of ``reference_boxes`` (ground truth) relative to ``proposals`` (anchors).

    Girshick et al. 2014, Appendix C; Ren et al. 2015, Eq. (2): with centres, widths and heights
    :math:`(x_a, y_a, w_a, h_a)` of a proposal and :math:`(x, y, w, h)` of its ground truth,

    .. math:: t_x = w_x \frac{x - x_a}{w_a},\quad t_y = w_y \frac{y - y_a}{h_a},\quad
        t_w = w_w \log\frac{w}{w_a},\quad t_h = w_h \log\frac{h}{h_a}.

    The weights scale the targets to about unit variance (torchvision's second stage uses
    ``(10, 10, 5, 5)``, its RPN ``(1, 1, 1, 1)``).

    Args:
        reference_boxes (Tensor[N, 4]): the boxes to encode (``(x1, y1, x2, y2)``).
        proposals (Tensor[N, 4]): the boxes they are encoded relative to.
        weights: ``(w_x, w_y, w_w, w_h)``, positive.

    Returns:
        Tensor[N, 4]: ``(t_x, t_y, t_w, t_h)``.
    """
    caller = "encode_boxes"
    ref = _boxes("reference_boxes", reference_boxes, caller)
    prop = _boxes("proposals", proposals, caller)
    _v.same_shape("proposals", prop, caller=caller, like=ref, like_name="reference_boxes")
    wx, wy, ww, wh = torch.as_tensor(_weights(weights, caller), dtype=ref.dtype, device=ref.device)
    prop = prop.to(ref.dtype)
    pw, ph = prop[:, 2] - prop[:, 0], prop[:, 3] - prop[:, 1]  # [N]
    px, py = prop[:, 0] + 0.5 * pw, prop[:, 1] + 0.5 * ph
    gw, gh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    gx, gy = ref[:, 0] + 0.5 * gw, ref[:, 1] + 0.5 * gh
    return torch.stack(
        (wx * (gx - px) / pw, wy * (gy - py) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)), dim=1
    )  # [N, 4]


def decode_boxes(
    rel_codes: torch.Tensor,
    boxes: torch.Tensor,
    *,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    bbox_xform_clip: float = math.log(1000.0 / 16),
) -> torch.Tensor:
    r"""Inverse of :func:`encode_boxes`: apply offsets ``rel_codes`` to ``boxes`` (anchors).

    .. math:: x = \frac{t_x}{w_x} w_a + x_a,\quad w = w_a \exp\Bigl(\min\bigl(\tfrac{t_w}{w_w},
        \text{clip}\bigr)\Bigr),

    and the same for :math:`y, h`. The clip (default :math:`\log(1000/16)`, torchvision's)
    keeps :math:`\exp` from overflowing on an untrained network's outputs.

    Args:
        rel_codes (Tensor[N, 4]): ``(t_x, t_y, t_w, t_h)``.
        boxes (Tensor[N, 4]): the reference boxes (anchors or proposals), ``(x1, y1, x2, y2)``.
        weights: as in :func:`encode_boxes`.
        bbox_xform_clip: upper bound of :math:`t_w / w_w` and :math:`t_h / w_h`.

    Returns:
        Tensor[N, 4]: decoded ``(x1, y1, x2, y2)`` boxes.
    """
    caller = "decode_boxes"
    codes = _boxes("rel_codes", rel_codes, caller)
    boxes = _boxes("boxes", boxes, caller)
    _v.same_shape("boxes", boxes, caller=caller, like=codes, like_name="rel_codes")
    wx, wy, ww, wh = _weights(weights, caller)
    clip = _v.real("bbox_xform_clip", bbox_xform_clip, caller=caller)
    boxes = boxes.to(codes.dtype)
    aw, ah = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # [N]
    ax, ay = boxes[:, 0] + 0.5 * aw, boxes[:, 1] + 0.5 * ah
    dx, dy = codes[:, 0] / wx, codes[:, 1] / wy
    dw, dh = (codes[:, 2] / ww).clamp(max=clip), (codes[:, 3] / wh).clamp(max=clip)
    cx, cy = dx * aw + ax, dy * ah + ay
    half_w, half_h = 0.5 * (torch.exp(dw) * aw), 0.5 * (torch.exp(dh) * ah)
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=1)  # [N, 4]


def anchor_grid(
    feature_size: tuple[int, int],
    stride: int | tuple[int, int],
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""The anchors of one feature map, as Faster R-CNN's region proposal network places them.

    Ren et al. 2015, Sec. 3.1.1. Each size :math:`s` and aspect ratio :math:`r = h / w` gives a
    base anchor of width :math:`s / \sqrt r` and height :math:`s \sqrt r` (area :math:`s^2`),
    centred at the origin and rounded to whole pixels (half to even, as torchvision does); it is
    repeated at every feature-map cell, shifted by the cell's top-left pixel
    :math:`(j\, s_w, i\, s_h)`. Order: cell (row-major) first, then aspect ratio, then size.

    Args:
        feature_size: ``(H, W)`` of the feature map.
        stride: pixels per cell, an int or ``(s_h, s_w)``.
        sizes: anchor sizes :math:`s` in pixels, positive.
        aspect_ratios: ratios :math:`h / w`, positive.
        dtype: floating-point dtype of the result.

    Returns:
        Tensor[H W len(aspect_ratios) len(sizes), 4] of ``(x1, y1, x2, y2)`` anchors.
    """
    caller = "anchor_grid"
    fh, fw = _v.pair("feature_size", feature_size, caller=caller, minimum=0)
    sh, sw = _v.pair("stride", stride, caller=caller, minimum=1)
    sizes = _positive_list("sizes", sizes, caller)
    ratios = _positive_list("aspect_ratios", aspect_ratios, caller)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{caller}: dtype must be a floating-point torch.dtype; got {dtype!r}")
    scales = torch.as_tensor(sizes, dtype=dtype)  # [S]
    h_ratios = torch.sqrt(torch.as_tensor(ratios, dtype=dtype))  # [R]
    ws = (scales[None, :] / h_ratios[:, None]).reshape(-1)  # [R * S], ratio-major
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = (torch.stack((-ws, -hs, ws, hs), dim=1) / 2).round()  # [R * S, 4]
    ys = torch.arange(fh, dtype=torch.int64) * sh  # [H]
    xs = torch.arange(fw, dtype=torch.int64) * sw  # [W]
    shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W]
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)  # [H W, 1, 4]
    return (shifts + base[None]).reshape(-1, 4)  # [H W R S, 4]


def _positive_list(name: str, value: object, caller: str) -> list[float]:
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{caller}: {name} must be a tuple or list of numbers; got {type(value).__name__}")
    if len(value) == 0:
        raise ValueError(f"{caller}: {name} must not be empty; got {value!r}")
    return [_v.real(name, x, caller=caller, low=0.0, low_open=True) for x in value]


def match_anchors(
    iou: torch.Tensor,
    *,
    high_threshold: float = 0.7,
    low_threshold: float = 0.3,
    allow_low_quality_matches: bool = False,
) -> torch.Tensor:
    r"""Assign each anchor (column) the ground-truth box (row) it overlaps most, or a negative code.

    Ren et al. 2015, Sec. 3.1.2: an anchor whose best IoU is at least ``high_threshold`` is
    positive (its match is the index of that ground truth); below ``low_threshold`` it is
    background (``-1``); in between it is ignored in the loss (``-2``). With
    ``allow_low_quality_matches``, every ground truth also keeps the anchor(s) that overlap it
    most (all ties), even below the threshold, so that no object is left without an anchor.

    Unlike torchvision's ``Matcher``, which raises on an empty matrix, no ground truth (G = 0)
    gives every anchor ``-1`` (what torchvision's RPN does for an image without objects).

    Args:
        iou (Tensor[G, A]): IoU of every ground truth with every anchor.
        high_threshold: positive from this IoU on.
        low_threshold: negative below this IoU; must not exceed ``high_threshold``.
        allow_low_quality_matches: keep each ground truth's best anchors.

    Returns:
        Tensor[A] of int64: a ground-truth index, ``-1`` (background) or ``-2`` (ignored).
    """
    caller = "match_anchors"
    iou = _v.tensor("iou", iou, caller=caller, dtype="floating", ndim=2)
    high = _v.real("high_threshold", high_threshold, caller=caller)
    low = _v.real("low_threshold", low_threshold, caller=caller)
    if low > high:
        raise ValueError(f"{caller}: low_threshold must be <= high_threshold {high}; got {low}")
    allow = _v.boolean("allow_low_quality_matches", allow_low_quality_matches, caller=caller)
    g, a = iou.shape
    if g == 0 or a == 0:
        return torch.full((a,), -1, dtype=torch.long, device=iou.device)
    best, matches = iou.max(dim=0)  # [A] best IoU and its ground truth
    result = matches.clone()
    result[best < low] = -1
    result[(best >= low) & (best < high)] = -2
    if allow:
        best_per_gt = iou.max(dim=1).values  # [G]
        anchors = torch.nonzero(iou == best_per_gt[:, None])[:, 1]  # every (gt, anchor) tie
        result[anchors] = matches[anchors]
    return result


# --------------------------------------------------------------------------- COCO mean average precision

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # T = 10, exactly pycocotools' values
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # R = 101


def _check_detections(items: object, name: str, keys: tuple[str, ...], caller: str) -> list[dict]:
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{caller}: {name} must be a list of dicts (one per image); got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TypeError(f"{caller}: {name}[{i}] must be a dict; got {type(item).__name__}")
        missing = [k for k in keys if k not in item]
        if missing:
            raise ValueError(f"{caller}: {name}[{i}] must have keys {keys}; missing {missing}")
        boxes = _boxes(f"{name}[{i}]['boxes']", item["boxes"], caller)
        n = boxes.shape[0]
        labels = _v.tensor(f"{name}[{i}]['labels']", item["labels"], caller=caller, dtype="integer", shape=(n,))
        entry = {"boxes": boxes.detach().cpu().double(), "labels": labels.detach().cpu()}
        if "scores" in keys:
            scores = _v.tensor(f"{name}[{i}]['scores']", item["scores"], caller=caller, dtype="floating", shape=(n,))
            entry["scores"] = scores.detach().cpu().double()
        out.append(entry)
    return out


def _coco_iou(det: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU as pycocotools computes it: in float64, 0 unless the boxes overlap with positive width and height."""
    top_left = torch.max(det[:, None, :2], gt[None, :, :2])
    bottom_right = torch.min(det[:, None, 2:], gt[None, :, 2:])
    wh = bottom_right - top_left  # [D, G, 2]
    inter = wh[..., 0] * wh[..., 1]
    area_d = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    overlap = (wh[..., 0] > 0) & (wh[..., 1] > 0)
    union = area_d[:, None] + area_g[None, :] - inter
    return torch.where(overlap, inter / torch.where(overlap, union, 1.0), 0.0)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _greedy_match(iou: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Which detections (rows, sorted by score) match a ground truth at each threshold: Tensor[T, D] bool.

    COCO's rule: each detection in turn takes the still unmatched ground truth of highest IoU,
    if that IoU reaches the threshold (ties go to the later ground truth, as in pycocotools).
    """
    d, g = iou.shape
    t = thresholds.shape[0]
    matched_gt = torch.zeros(t, g, dtype=torch.bool)
    matched_dt = torch.zeros(t, d, dtype=torch.bool)
    flipped = torch.arange(g - 1, -1, -1)  # argmax over a reversed row returns the last maximum
    for i in range(d):  # sequential by nature: a detection's match depends on the earlier ones
        ok = (iou[i][None, :] >= thresholds[:, None]) & ~matched_gt  # [T, G]
        if not bool(ok.any()):
            continue
        candidates = torch.where(ok, iou[i][None, :], -1.0)[:, flipped]  # [T, G], reversed
        best = flipped[candidates.argmax(dim=1)]  # [T]
        hit = ok.any(dim=1)  # [T]
        matched_dt[hit, i] = True
        matched_gt[hit.nonzero()[:, 0], best[hit]] = True
    return matched_dt


def mean_average_precision(preds: list[dict], targets: list[dict]) -> dict[str, float]:
    r"""COCO-style mean average precision over classes, equal to pycocotools' ``COCOeval`` (bbox).

    For every class and IoU threshold :math:`t \in \{0.50, 0.55, \dots, 0.95\}`: per image, take
    at most 100 detections by decreasing score and match them greedily to ground truths at IoU
    :math:`\ge t`; pool the detections of all images, sort them by score, accumulate precision
    and recall, make precision monotone (the running maximum from the right), read it at the
    101 recall levels :math:`0, 0.01, \dots, 1` (0 beyond the highest recall reached) and
    average. A class without ground truth is left out; ``map`` averages over the classes and
    the ten thresholds, ``map_50`` and ``map_75`` use one threshold each (Lin et al. 2014).
    All areas count (COCO's ``areaRng="all"``), there are no crowd annotations; as in
    pycocotools, a box with a negative area (:math:`x_2 < x_1` or :math:`y_2 < y_1`, not both)
    is ignored, and the IoU of boxes that touch without overlapping is 0. Boxes larger than
    :math:`10^{10}` pixels, which COCO's ``"all"`` range leaves out, are not handled.

    Args:
        preds: one dict per image, ``"boxes"`` (Tensor[D, 4] ``(x1, y1, x2, y2)``), ``"scores"``
            (Tensor[D]), ``"labels"`` (Tensor[D] of integers).
        targets: one dict per image, ``"boxes"`` (Tensor[G, 4]) and ``"labels"`` (Tensor[G]).

    Returns:
        ``{"map", "map_50", "map_75"}`` as floats, ``-1.0`` where no class has a ground truth.
    """
    caller = "mean_average_precision"
    preds = _check_detections(preds, "preds", ("boxes", "scores", "labels"), caller)
    targets = _check_detections(targets, "targets", ("boxes", "labels"), caller)
    if len(preds) != len(targets):
        raise ValueError(
            f"{caller}: preds and targets must have one entry per image each; got {len(preds)} and {len(targets)}"
        )
    thresholds = torch.from_numpy(np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10))  # [T], as pycocotools
    recall_points = torch.from_numpy(COCO_RECALL_POINTS)  # [R]
    classes = sorted({int(c) for t in targets for c in t["labels"].tolist()})
    if not classes:
        return {"map": -1.0, "map_50": -1.0, "map_75": -1.0}
    # 1. Per image: match the detections of all classes in one pass (a detection can only match a
    #    ground truth of its own class, so the classes do not interact).
    scores, labels, hits = [], [], []
    n_gt = torch.zeros(len(classes), dtype=torch.long)
    class_ids = torch.tensor(classes, dtype=torch.long)
    for p, t in zip(preds, targets):
        order = torch.sort(p["scores"], descending=True, stable=True).indices
        det, s, lab = p["boxes"][order], p["scores"][order], p["labels"][order]
        same = lab[:, None] == class_ids[None, :]  # [D, K]
        rank = (same.cumsum(0) * same).sum(1)  # 1-based rank of each detection within its class
        top = rank.le(100) & same.any(1)  # at most 100 per image and class; classes with ground truth only
        det, s, lab = det[top], s[top], lab[top]
        gt_ok = _area(t["boxes"]) >= 0  # pycocotools ignores a box of negative area
        n_gt += (t["labels"][gt_ok][:, None] == class_ids[None, :]).sum(0)
        iou = torch.where(lab[:, None] == t["labels"][None, :], _coco_iou(det, t["boxes"]), -1.0)  # [D, G]
        counted = _area(det) >= 0  # (x2 < x1 or y2 < y1, not both); it still took one of the 100 places
        hits.append(_greedy_match(iou, thresholds)[:, counted])  # [T, D_i]
        scores.append(s[counted])
        labels.append(lab[counted])
    scores, labels, hits = torch.cat(scores), torch.cat(labels), torch.cat(hits, dim=1)  # [D], [D], [T, D]

    # 2. Per class: pool the images' detections by score, accumulate precision and recall.
    precision = torch.full((len(COCO_IOU_THRESHOLDS), len(recall_points), len(classes)), -1.0, dtype=torch.float64)
    for k, c in enumerate(classes):
        if n_gt[k] == 0:
            continue  # no ground truth (that counts): left out of the mean, as in pycocotools
        mine = labels == c
        order = torch.sort(scores[mine], descending=True, stable=True).indices  # image order breaks ties
        hit = hits[:, mine][:, order]  # [T, D_c]
        tp = torch.cumsum(hit, dim=1, dtype=torch.float64)  # [T, D_c]
        fp = torch.cumsum(~hit, dim=1, dtype=torch.float64)
        recall = tp / float(n_gt[k])
        prec = tp / (fp + tp + np.spacing(1))
        prec = torch.flip(torch.cummax(torch.flip(prec, [1]), dim=1).values, [1])  # monotone from the right
        d = hit.shape[1]
        if d == 0:  # ground truth but no detection: precision 0 at every recall level
            precision[:, :, k] = 0.0
            continue
        levels = recall_points.expand(len(thresholds), -1).contiguous()  # [T, R]
        idx = torch.searchsorted(recall, levels, side="left")  # [T, R] first point reaching each level
        read = torch.gather(prec, 1, idx.clamp(max=d - 1))
        precision[:, :, k] = torch.where(idx < d, read, 0.0)  # 0 beyond the highest recall reached

    def summary(p: torch.Tensor) -> float:
        valid = p[p > -1]
        return float(valid.numpy().mean()) if valid.numel() else -1.0

    return {"map": summary(precision), "map_50": summary(precision[0]), "map_75": summary(precision[5])}


def coco_reference_map(preds: list[dict], targets: list[dict]) -> dict[str, float]:
    """The same three numbers from pycocotools' ``COCOeval`` (the reference the chapter checks against).

    Builds the ground-truth ``COCO`` object by hand (image ids 1..n, annotation ids from 1,
    boxes converted to ``xywh``); an empty detection list, which ``loadRes`` refuses, is replaced
    by one detection of a category that does not exist (and so is never evaluated). Prints nothing.
    """
    caller = "coco_reference_map"
    _check_detections(preds, "preds", ("boxes", "scores", "labels"), caller)
    _check_detections(targets, "targets", ("boxes", "labels"), caller)
    if len(preds) != len(targets):
        raise ValueError(
            f"{caller}: preds and targets must have one entry per image each; got {len(preds)} and {len(targets)}"
        )
    from pycocotools.coco import COCO  # noqa: PLC0415
    from pycocotools.cocoeval import COCOeval  # noqa: PLC0415

    images, annotations, detections, categories = [], [], [], set()
    for i, (p, t) in enumerate(zip(preds, targets), start=1):
        images.append({"id": i})
        for box, label in zip(box_convert(t["boxes"].double(), "xyxy", "xywh").tolist(), t["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
            categories.add(int(label))
        for box, score, label in zip(box_convert(p["boxes"].double(), "xyxy", "xywh").tolist(),
                                     p["scores"].tolist(), p["labels"].tolist()):
            detections.append({"image_id": i, "category_id": int(label), "bbox": box, "score": float(score)})
    if not images:
        return {"map": -1.0, "map_50": -1.0, "map_75": -1.0}
    if not detections:
        detections.append({"image_id": 1, "category_id": -12345, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.0})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c} for c in sorted(categories)]}
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    s = evaluator.stats
    return {"map": float(s[0]), "map_50": float(s[1]), "map_75": float(s[2])}


# --------------------------------------------------------------------------- a synthetic detection data set


def make_digit_canvases(
    images: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    *,
    canvas_size: int = 64,
    max_objects: int = 3,
    size_range: tuple[int, int] = (12, 24),
    noise: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[dict]]:
    r"""Canvases with digits pasted at random positions and scales, and their boxes.

    Each canvas gets between 1 and ``max_objects`` digits drawn from ``images``; each digit is
    resized (bilinear) to a random square side in ``size_range`` and pasted (pixel-wise
    maximum) where it overlaps no earlier digit; its box is the pasted square. Gaussian noise
    of standard deviation ``noise`` is added and the result clipped to [0, 1]. Pass the training
    digits for training canvases and the test digits for held-out ones, so no digit is shared.

    Args:
        images (Tensor[M, 1, h, w]): source digits in [0, 1] (e.g. ``dlkb.data.load_digits().x_train``).
        labels (Tensor[M]): their integer classes.
        n: number of canvases.
        canvas_size: side of the square canvases in pixels.
        max_objects: at most this many digits per canvas (at least 1).
        size_range: ``(smallest, largest)`` side of a pasted digit in pixels.
        noise: standard deviation of the added Gaussian noise.
        generator: random number generator (positions, scales, digits, noise).

    Returns:
        ``(canvases, targets)``: Tensor[n, 1, canvas_size, canvas_size] and one dict per canvas
        with ``"boxes"`` (Tensor[G, 4] float32, ``(x1, y1, x2, y2)``) and ``"labels"`` (Tensor[G] int64).
    """
    caller = "make_digit_canvases"
    images = _v.tensor("images", images, caller=caller, dtype="floating", ndim=4, nonempty=True)
    if images.shape[1] != 1:
        raise ValueError(f"{caller}: images must have one channel (M, 1, h, w); got shape {_v.shape_str(images.shape)}")
    labels = _v.tensor("labels", labels, caller=caller, dtype="integer", shape=(images.shape[0],))
    n = _v.integer("n", n, caller=caller, minimum=0)
    size = _v.integer("canvas_size", canvas_size, caller=caller, minimum=1)
    max_objects = _v.integer("max_objects", max_objects, caller=caller, minimum=1)
    lo, hi = _v.pair("size_range", size_range, caller=caller, minimum=1)
    if lo > hi or hi > size:
        raise ValueError(f"{caller}: size_range must satisfy smallest <= largest <= canvas_size {size}; got {(lo, hi)}")
    noise = _v.real("noise", noise, caller=caller, low=0.0)
    if generator is not None:
        _v.instance("generator", generator, caller=caller, types=torch.Generator)

    def randint(low: int, high: int) -> int:  # uniform in [low, high]
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    canvases = torch.zeros(n, 1, size, size)
    targets = []
    for c in range(n):
        boxes, classes = [], []
        for _ in range(randint(1, max_objects)):
            for _attempt in range(20):  # rejection sampling of a free spot
                side = randint(lo, hi)
                x, y = randint(0, size - side), randint(0, size - side)
                box = torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32)
                if not boxes or bool((_inter_union(box, torch.stack(boxes))[0] == 0).all()):
                    break
            else:
                continue  # no free spot: fewer digits on this canvas
            k = randint(0, images.shape[0] - 1)
            digit = F.interpolate(images[k : k + 1].float(), size=(side, side), mode="bilinear", align_corners=False)
            patch = canvases[c, :, y : y + side, x : x + side]
            canvases[c, :, y : y + side, x : x + side] = torch.maximum(patch, digit[0].clamp(0, 1))
            boxes.append(box[0])
            classes.append(int(labels[k]))
        targets.append({
            "boxes": torch.stack(boxes) if boxes else torch.zeros(0, 4),
            "labels": torch.tensor(classes, dtype=torch.long),
        })
    if noise > 0:
        canvases = (canvases + noise * torch.randn(canvases.shape, generator=generator)).clamp(0, 1)
    return canvases, targets


# --------------------------------------------------------------------------- a tiny one-stage detector


class TinyDetector(nn.Module):
    r"""A one-stage, anchor-free detector in the spirit of YOLO v1 (Redmon et al. 2016), for small grey canvases.

    Four 3×3 convolutions (the first with stride 2, the next two followed by 2×2 max pooling,
    each with batch normalization and ReLU) turn a Tensor[B, 1, H, W] into an
    :math:`H/8 \times W/8` grid; a 1×1 convolution predicts, per cell, an objectness logit
    :math:`o`, four box numbers :math:`(t_x, t_y, t_w, t_h)` and ``num_classes`` class logits.
    The box centre is :math:`(j + \sigma(t_x), i + \sigma(t_y))` cells and its size
    :math:`s_0 e^{t_w} \times s_0 e^{t_h}` pixels (:math:`s_0` = ``prior_size``). One box per
    cell; the cell that contains an object's centre is responsible for it.

    Args:
        num_classes: number of object classes K.
        width: channels of the first convolution (doubled twice).
        prior_size: :math:`s_0`, the box size predicted by :math:`t_w = t_h = 0`.
    """

    stride = 8

    def __init__(self, num_classes: int = 10, width: int = 8, prior_size: float = 16.0) -> None:
        super().__init__()
        caller = "TinyDetector"
        self.num_classes = _v.integer("num_classes", num_classes, caller=caller, minimum=1)
        width = _v.integer("width", width, caller=caller, minimum=1)
        self.prior_size = _v.real("prior_size", prior_size, caller=caller, low=0.0, low_open=True)

        def block(c_in: int, c_out: int, stride: int = 1, pool: bool = False) -> list[nn.Module]:
            layers = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.backbone = nn.Sequential(
            *block(1, width, stride=2),  # [B, w, H/2, W/2]
            *block(width, 2 * width, pool=True),  # [B, 2w, H/4, W/4]
            *block(2 * width, 4 * width, pool=True),  # [B, 4w, H/8, W/8]
            *block(4 * width, 4 * width),  # [B, 4w, H/8, W/8]
        )
        self.head = nn.Conv2d(4 * width, 5 + self.num_classes, 1)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[0] = -4.0  # start with low objectness: most cells are background (Lin et al. 2017, Sec. 3.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tensor[B, 1, H, W] -> raw outputs Tensor[B, S_h, S_w, 5 + K]: (o, t_x, t_y, t_w, t_h, class logits)."""
        _v.tensor("x", x, caller="TinyDetector", dtype="floating", ndim=4)
        return self.head(self.backbone(x)).permute(0, 2, 3, 1)  # [B, S_h, S_w, 5 + K]

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Boxes ``(x1, y1, x2, y2)`` in pixels of every cell: Tensor[B, S_h, S_w, 4]."""
        _, sh, sw, _ = out.shape
        i = torch.arange(sh, device=out.device, dtype=out.dtype)[:, None]  # [S_h, 1]
        j = torch.arange(sw, device=out.device, dtype=out.dtype)[None, :]  # [1, S_w]
        cx = (j + torch.sigmoid(out[..., 1])) * self.stride  # [B, S_h, S_w]
        cy = (i + torch.sigmoid(out[..., 2])) * self.stride
        w = self.prior_size * torch.exp(out[..., 3].clamp(max=4.0))
        h = self.prior_size * torch.exp(out[..., 4].clamp(max=4.0))
        return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def grid_targets(targets: list[dict], grid: tuple[int, int], stride: int) -> tuple[torch.Tensor, ...]:
    """Per-cell training targets of :class:`TinyDetector`: the cell holding an object's centre is responsible.

    Returns:
        ``(positive, classes, boxes)``: Tensor[B, S_h, S_w] bool, Tensor[B, S_h, S_w] int64 and
        Tensor[B, S_h, S_w, 4] (the responsible cells' ground-truth boxes, zeros elsewhere).
    """
    caller = "grid_targets"
    _check_detections(targets, "targets", ("boxes", "labels"), caller)
    _v.instance("grid", grid, caller=caller, types=(tuple, list))
    grid = _v.pair("grid", grid, caller=caller, minimum=1)
    stride = _v.integer("stride", stride, caller=caller, minimum=1)
    b = len(targets)
    positive = torch.zeros(b, *grid, dtype=torch.bool)
    classes = torch.zeros(b, *grid, dtype=torch.long)
    boxes = torch.zeros(b, *grid, 4)
    for n, t in enumerate(targets):
        centre = (t["boxes"][:, :2] + t["boxes"][:, 2:]) / 2  # [G, 2]
        j = (centre[:, 0] / stride).long().clamp(0, grid[1] - 1)
        i = (centre[:, 1] / stride).long().clamp(0, grid[0] - 1)
        positive[n, i, j] = True
        classes[n, i, j] = t["labels"]
        boxes[n, i, j] = t["boxes"].float()
    return positive, classes, boxes


def detector_loss(
    model: TinyDetector, out: torch.Tensor, positive: torch.Tensor, classes: torch.Tensor, boxes: torch.Tensor
) -> torch.Tensor:
    r"""Loss of :class:`TinyDetector` (targets from :func:`grid_targets`), normalized by the number of objects.

    .. math:: \mathcal L = \frac{1}{N_{pos}} \Bigl(\sum_{\text{cells}} \mathrm{BCE}(o, \mathbb 1_{pos})
        + \sum_{pos} \mathrm{CE}(\mathbf z, k) + 2 \sum_{pos} \bigl(1 - \mathrm{GIoU}(\hat b, b)\bigr)\Bigr).

    Binary cross-entropy on the objectness logit of every cell; cross-entropy on the class
    logits and the GIoU loss (:func:`giou_loss`) on the boxes of the responsible cells only.
    """
    caller = "detector_loss"
    _v.instance("model", model, caller=caller, types=TinyDetector)
    out = _v.tensor("out", out, caller=caller, dtype="floating", ndim=4)
    cells = tuple(out.shape[:3])  # (B, S_h, S_w)
    _v.tensor("positive", positive, caller=caller, dtype="bool", shape=cells)
    _v.tensor("classes", classes, caller=caller, dtype="integer", shape=cells)
    _v.tensor("boxes", boxes, caller=caller, dtype="floating", shape=(*cells, 4))
    n_pos = positive.sum().clamp(min=1)
    obj = F.binary_cross_entropy_with_logits(out[..., 0], positive.to(out.dtype), reduction="sum")
    cls = F.cross_entropy(out[..., 5:][positive], classes[positive], reduction="sum")
    box = giou_loss(model.decode(out)[positive], boxes[positive], reduction="sum")
    return (obj + cls + 2.0 * box) / n_pos


@torch.no_grad()
def detect(
    model: TinyDetector,
    images: torch.Tensor,
    *,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    batch_size: int = 256,
) -> list[dict]:
    r"""Detections of a :class:`TinyDetector`: score :math:`\sigma(o)\,\max_k p_k`, threshold, per-class NMS.

    Returns one dict per image with ``"boxes"`` (Tensor[D, 4]), ``"scores"`` and ``"labels"``,
    at most 100 per image, ready for :func:`mean_average_precision`.
    """
    caller = "detect"
    _v.instance("model", model, caller=caller, types=TinyDetector)
    images = _v.tensor("images", images, caller=caller, dtype="floating", ndim=4)
    score_threshold = _v.real("score_threshold", score_threshold, caller=caller, low=0.0, high=1.0)
    iou_threshold = _v.real("iou_threshold", iou_threshold, caller=caller)
    batch_size = _v.integer("batch_size", batch_size, caller=caller, minimum=1)
    device = next(model.parameters()).device
    preds = []
    with eval_mode(model):  # the previous mode comes back afterwards, even on error
        preds = _detect_batches(model, images, score_threshold, iou_threshold, batch_size, device)
    return preds


def _detect_batches(model, images, score_threshold, iou_threshold, batch_size, device) -> list[dict]:
    preds = []
    for start in range(0, images.shape[0], batch_size):
        out = model(images[start : start + batch_size].to(device))  # [b, S_h, S_w, 5 + K]
        boxes = model.decode(out).flatten(1, 2)  # [b, S_h S_w, 4]
        prob = torch.softmax(out[..., 5:], dim=-1).flatten(1, 2)  # [b, S_h S_w, K]
        best, labels = prob.max(dim=-1)
        scores = torch.sigmoid(out[..., 0]).flatten(1) * best  # [b, S_h S_w]
        for bx, sc, lb in zip(boxes, scores, labels):
            keep = sc > score_threshold
            bx, sc, lb = bx[keep], sc[keep], lb[keep]
            kept = batched_nms(bx, sc, lb, iou_threshold)[:100]
            preds.append({"boxes": bx[kept].cpu(), "scores": sc[kept].cpu(), "labels": lb[kept].cpu()})
    return preds


def train_detector(
    model: TinyDetector,
    images: torch.Tensor,
    targets: list[dict],
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-2,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train ``model`` with Adam and a one-cycle learning-rate schedule; returns each epoch's mean loss.

    The batches are shuffled with ``generator``; the model stays on its device (CPU or CUDA),
    the data are moved batch by batch.
    """
    caller = "train_detector"
    _v.module("model", model, caller=caller)
    images = _v.tensor("images", images, caller=caller, dtype="floating", ndim=4, nonempty=True)
    epochs = _v.integer("epochs", epochs, caller=caller, minimum=1)
    batch_size = _v.integer("batch_size", batch_size, caller=caller, minimum=1)
    lr = _v.real("lr", lr, caller=caller, low=0.0, low_open=True)
    if len(targets) != images.shape[0]:
        raise ValueError(f"{caller}: targets must have one entry per image ({images.shape[0]}); got {len(targets)}")
    device = next(model.parameters()).device
    grid = (images.shape[2] // model.stride, images.shape[3] // model.stride)
    positive, classes, boxes = grid_targets(targets, grid, model.stride)  # once, not per batch
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(images.shape[0] / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.2)
    history = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(images.shape[0], generator=generator)
        total = torch.zeros((), device=device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out = model(images[idx].to(device))
            loss = detector_loss(model, out, positive[idx].to(device), classes[idx].to(device), boxes[idx].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach() * len(idx)
        history.append(float(total) / len(order))
    return history


# --------------------------------------------------------------------------- sliding-window HOG + linear SVM


class HogSvmDetector:
    r"""The traditional pipeline: image pyramid, sliding window, HOG features, linear SVM, NMS.

    Dalal & Triggs 2005. The canvas is rescaled once per object size in ``sizes`` so that such an
    object fills one ``window`` × ``window`` window (the image pyramid). HOG
    (:func:`dlkb.classic.hog_features`, cells of 4×4 pixels, blocks of 2×2 cells) is computed
    once per pyramid level, and a window's descriptor is the 3×3 blocks it covers: windows slide
    by one cell (4 pixels) and share their blocks, as in the paper. A linear SVM with K + 1
    classes (the digits and background, one-vs-rest) scores each window. A window becomes a
    detection when a digit beats the background; its score is that digit's margin. Overlapping
    detections are merged by NMS, across classes (``class_agnostic=True``) or within each class.

    Training windows are labelled like anchors (:func:`match_anchors`): IoU at least
    ``positive_iou`` with a ground truth makes a positive of that class, below 0.3 a negative,
    in between ignored.

    Args:
        window: side of the square window in pixels (of a pyramid level), a multiple of 4, at least 8.
        sizes: object sizes (pixels of the original canvas) the pyramid looks for.
        C: inverse regularization strength of the SVM.
        positive_iou: IoU from which a training window counts as the object.
    """

    cell = 4

    def __init__(
        self, window: int = 16, sizes: Sequence[float] = (11, 15, 20), C: float = 0.1, positive_iou: float = 0.7
    ) -> None:
        caller = "HogSvmDetector"
        self.window = _v.integer("window", window, caller=caller, minimum=8)
        if self.window % self.cell:
            raise ValueError(f"{caller}: window must be a multiple of {self.cell}; got {window}")
        self.sizes = _positive_list("sizes", sizes, caller)
        self.C = _v.real("C", C, caller=caller, low=0.0, low_open=True)
        self.positive_iou = _v.real("positive_iou", positive_iou, caller=caller, low=0.3, high=1.0)
        self.svm = None

    def pyramid(self, image_size: tuple[int, int]) -> list[tuple[float, int, int]]:
        """``(scale, height, width)`` of each pyramid level: the canvas scaled by ``window / size``."""
        h, w = image_size
        return [(self.window / s, round(h * self.window / s), round(w * self.window / s)) for s in self.sizes]

    def windows(self, images: torch.Tensor):
        """For each pyramid level: the windows' boxes in original pixels, Tensor[L, 4], and their
        HOG descriptors, ndarray[B, L, D] (D = 324 for 16-pixel windows)."""
        from dlkb.classic import hog_features  # noqa: PLC0415

        b = images.shape[0]
        k = self.window // self.cell - 1  # blocks per window side
        for scale, sh, sw in self.pyramid(tuple(images.shape[-2:])):
            level = F.interpolate(images, size=(sh, sw), mode="bilinear", align_corners=False)[:, 0]  # [B, sh, sw]
            hog = hog_features(level.numpy(), pixels_per_cell=(self.cell, self.cell), cells_per_block=(2, 2))
            by, bx = sh // self.cell - 1, sw // self.cell - 1  # blocks of the whole level
            blocks = hog.reshape(b, by, bx, -1)  # [B, by, bx, 2 * 2 * O]
            win = np.lib.stride_tricks.sliding_window_view(blocks, (k, k), axis=(1, 2))  # [B, ny, nx, 36, k, k]
            ny, nx = win.shape[1:3]
            feats = win.transpose(0, 1, 2, 4, 5, 3).reshape(b, ny * nx, -1)  # blocks in hog_features' order
            gy, gx = torch.meshgrid(torch.arange(ny) * self.cell, torch.arange(nx) * self.cell, indexing="ij")
            boxes = torch.stack((gx, gy, gx + self.window, gy + self.window), dim=-1).reshape(-1, 4) / scale
            yield boxes.float(), feats

    def fit(self, images: torch.Tensor, targets: list[dict], *, negatives_per_positive: float = 3.0,
            generator: torch.Generator | None = None) -> HogSvmDetector:
        """Train the SVM on the windows of ``images`` (labelled by IoU with ``targets``), keeping a
        random ``negatives_per_positive`` background windows per positive one."""
        from sklearn.svm import LinearSVC  # noqa: PLC0415

        caller = "HogSvmDetector.fit"
        images = _v.tensor("images", images, caller=caller, dtype="floating", ndim=4, nonempty=True)
        ratio = _v.real("negatives_per_positive", negatives_per_positive, caller=caller, low=0.0)
        if len(targets) != images.shape[0]:
            raise ValueError(f"{caller}: targets must have one entry per image ({images.shape[0]}); got {len(targets)}")
        self.num_classes = 1 + max((int(t["labels"].max()) for t in targets if len(t["labels"])), default=0)
        x, y = [], []
        for boxes, feats in self.windows(images):
            for i, t in enumerate(targets):
                iou = box_iou(t["boxes"].float(), boxes)  # [G, L]
                match = match_anchors(iou, high_threshold=self.positive_iou, low_threshold=0.3)
                pos = (match >= 0).nonzero()[:, 0]
                neg = (match == -1).nonzero()[:, 0]
                n_neg = min(len(neg), max(1, round(ratio * len(pos))))
                neg = neg[torch.randperm(len(neg), generator=generator)[:n_neg]]
                x.append(feats[i, torch.cat((pos, neg)).numpy()])
                y.append(torch.cat((t["labels"][match[pos]], torch.full((n_neg,), self.num_classes))))
        self.svm = LinearSVC(C=self.C).fit(np.concatenate(x), torch.cat(y).numpy())
        return self

    @torch.no_grad()
    def margins(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every window's box, Tensor[L, 4] (the same for every image), and its SVM margins,
        Tensor[B, L, K + 1]. The last images' result is kept, so that detecting twice on the
        same tensor (e.g. with two kinds of NMS) computes the features once."""
        key = (images.data_ptr(), tuple(images.shape), images._version)
        if getattr(self, "_cache", (None,))[0] != key:
            levels = list(self.windows(images))
            boxes = torch.cat([bx for bx, _ in levels])  # [L, 4]
            feats = np.concatenate([f for _, f in levels], axis=1)  # [B, L, D]
            margins = torch.from_numpy(self.svm.decision_function(feats.reshape(-1, feats.shape[-1])))
            self._cache = (key, boxes, margins.float().reshape(images.shape[0], boxes.shape[0], -1))
        return self._cache[1], self._cache[2]

    @torch.no_grad()
    def detect(self, images: torch.Tensor, *, iou_threshold: float = 0.3, class_agnostic: bool = True) -> list[dict]:
        """Detections on Tensor[B, 1, H, W]: one dict per image (``boxes``, ``scores``, ``labels``), at most 100."""
        caller = "HogSvmDetector.detect"
        if self.svm is None:
            raise RuntimeError(f"{caller}: call fit first")
        images = _v.tensor("images", images, caller=caller, dtype="floating", ndim=4)
        class_agnostic = _v.boolean("class_agnostic", class_agnostic, caller=caller)
        iou_threshold = _v.real("iou_threshold", iou_threshold, caller=caller)
        boxes, margins = self.margins(images)  # [L, 4], [B, L, K + 1]
        best, labels = margins[..., : self.num_classes].max(dim=-1)  # [B, L]
        is_object = best > margins[..., self.num_classes]  # a digit beats the background
        preds = []
        for i in range(images.shape[0]):
            bx, sc, lb = boxes[is_object[i]], best[i][is_object[i]], labels[i][is_object[i]]
            kept = nms(bx, sc, iou_threshold) if class_agnostic else batched_nms(bx, sc, lb, iou_threshold)
            kept = kept[:100]
            preds.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
        return preds


# --------------------------------------------------------------------------- error analysis


def detection_errors(preds: list[dict], targets: list[dict], *, score_threshold: float = 0.5,
                     iou_threshold: float = 0.5) -> tuple[dict[str, int], list[int]]:
    """Sort the confident mistakes of a detector into kinds, as in Hoiem et al.'s error analysis.

    Detections scoring at least ``score_threshold`` are matched greedily (highest score first)
    to unmatched ground truths of IoU at least ``iou_threshold``. An unmatched detection is a
    ``"wrong class"`` if it overlaps a ground truth of another class by the threshold, a
    ``"poor box"`` if it overlaps its own class's ground truth by 0.1 to the threshold, a
    ``"duplicate"`` if that ground truth was already taken, else ``"background"``; an unmatched
    ground truth is ``"missed"``.

    Returns:
        ``(counts, images)``: the number of each kind (and ``"correct"``), and the indices of the
        images with at least one mistake.
    """
    caller = "detection_errors"
    preds = _check_detections(preds, "preds", ("boxes", "scores", "labels"), caller)
    targets = _check_detections(targets, "targets", ("boxes", "labels"), caller)
    if len(preds) != len(targets):
        raise ValueError(f"{caller}: preds and targets must have the same length; got {len(preds)} and {len(targets)}")
    counts = dict.fromkeys(("correct", "wrong class", "poor box", "duplicate", "background", "missed"), 0)
    images = []
    for n, (p, t) in enumerate(zip(preds, targets)):
        keep = p["scores"] >= score_threshold
        order = torch.sort(p["scores"][keep], descending=True, stable=True).indices
        boxes, labels = p["boxes"][keep][order], p["labels"][keep][order]
        iou = _coco_iou(boxes, t["boxes"])  # [D, G]
        same = labels[:, None] == t["labels"][None, :]
        taken = torch.zeros(len(t["labels"]), dtype=torch.bool)
        before = dict(counts)
        for d in range(len(labels)):
            ok = same[d] & ~taken & (iou[d] >= iou_threshold)
            if bool(ok.any()):
                taken[torch.where(ok, iou[d], -1.0).argmax()] = True
                counts["correct"] += 1
            elif bool(((~same[d]) & (iou[d] >= iou_threshold)).any()):
                counts["wrong class"] += 1
            elif bool((same[d] & (iou[d] >= iou_threshold)).any()):
                counts["duplicate"] += 1
            elif bool((same[d] & (iou[d] >= 0.1)).any()):
                counts["poor box"] += 1
            else:
                counts["background"] += 1
        counts["missed"] += int((~taken).sum())
        if any(counts[k] != before[k] for k in counts if k != "correct"):
            images.append(n)
    return counts, images


# --------------------------------------------------------------------------- drawing


def draw_boxes(ax, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor | None = None, *,
               scores: torch.Tensor | None = None, color: str = "#0072B2", linestyle: str = "-") -> None:
    """Show a grey Tensor[1, H, W] image on a matplotlib ``ax`` with its ``(x1, y1, x2, y2)`` boxes.

    Pixel ``(r, c)`` covers ``[c, c + 1) × [r, r + 1)``, so a box's corners are drawn at their
    coordinates exactly; labels (and scores) are written above each box.
    """
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    caller = "draw_boxes"
    image = _v.tensor("image", image, caller=caller, dtype="real", ndim=(2, 3))
    boxes = _boxes("boxes", boxes, caller)
    if labels is not None:
        _v.tensor("labels", labels, caller=caller, dtype="integer", shape=(boxes.shape[0],))
    h, w = image.shape[-2:]
    ax.imshow(image.reshape(h, w).detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
    for i, (x1, y1, x2, y2) in enumerate(boxes.detach().cpu().tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.5, ls=linestyle))
        if labels is not None:
            text = str(int(labels[i])) if scores is None else f"{int(labels[i])}:{float(scores[i]):.2f}"
            ax.text(x1, y1 - 0.5, text, color=color, fontsize=7, va="bottom",
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "lw": 0})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
