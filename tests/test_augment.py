"""Tests of dlkb.augment against torchvision.transforms.v2, imbalanced-learn and the papers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imblearn.over_sampling import SMOTE
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlkb.augment import cutmix, mixup, sample_pairing, smote, translate


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n=6, c=3, h=10, w=12, k=4, seed=0):
    g = _gen(seed)
    x = torch.rand(n, c, h, w, generator=g)
    y_idx = torch.randint(0, k, (n,), generator=g)
    return x, y_idx, F.one_hot(y_idx, k).float()


def _beta(alpha: float) -> float:
    # the same draw torchvision's MixUp / CutMix make from the global generator
    return float(torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha])).sample(()))


# ----------------------------------------------------------------------------- translate


@pytest.mark.parametrize("shape", [(3, 7, 9), (2, 1, 6, 5), (2, 2, 1, 4, 4)])
def test_translate_equals_torchvision_affine_for_every_shift(shape):
    img = torch.rand(*shape, generator=_gen(1))
    H, W = shape[-2:]
    for dx in range(-W - 1, W + 2):
        for dy in range(-H - 1, H + 2):
            for fill in (0.0, 0.3):
                ours = translate(img, dx, dy, fill=fill)
                ref = TF.affine(img, angle=0, translate=[dx, dy], scale=1, shear=[0, 0], fill=fill)
                assert ours.shape == img.shape
                torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_translate_direction_and_fill_by_hand():
    img = torch.arange(12.0).reshape(1, 3, 4)
    out = translate(img, 1, 2, fill=-1.0)  # right by 1, down by 2
    expected = torch.full((1, 3, 4), -1.0)
    expected[0, 2, 1:] = img[0, 0, :3]
    torch.testing.assert_close(out, expected)


def test_translate_non_contiguous_and_dtype_and_gradient():
    base = torch.rand(3, 8, 6, dtype=torch.float64, generator=_gen(2))
    img = base.transpose(1, 2)  # [3, 6, 8], not contiguous
    assert not img.is_contiguous()
    ref = TF.affine(img.contiguous(), angle=0, translate=[2, -1], scale=1, shear=[0, 0], fill=0.5)
    out = translate(img, 2, -1, fill=0.5)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    x = torch.rand(1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: translate(t, -2, 1, fill=0.25), (x,))


def test_translate_accepts_numpy_integers():
    img = torch.rand(1, 4, 4, generator=_gen(3))
    torch.testing.assert_close(translate(img, np.int64(1), np.int32(-1)), translate(img, 1, -1))


def test_translate_bad_inputs():
    img = torch.rand(1, 4, 4)
    with pytest.raises(TypeError, match=r"translate: dx must be an int; got float"):
        translate(img, 1.5, 0)
    with pytest.raises(TypeError, match=r"translate: dy must be an int; got bool"):
        translate(img, 0, True)
    with pytest.raises(TypeError, match=r"translate: fill must be a real number; got str"):
        translate(img, 0, 0, fill="0")
    with pytest.raises(TypeError, match=r"translate: img must be a torch.Tensor; got ndarray"):
        translate(np.zeros((1, 4, 4)), 0, 0)
    with pytest.raises(TypeError, match=r"translate: img must be a floating-point tensor; got dtype torch.uint8"):
        translate(torch.zeros(1, 4, 4, dtype=torch.uint8), 0, 0)
    with pytest.raises(ValueError, match=r"translate: img must have shape \(C, H, W\) or \(N, C, H, W\); got shape \(4, 4\)"):
        translate(torch.zeros(4, 4), 0, 0)


# ----------------------------------------------------------------------------- mixup


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_equals_torchvision_mixup(alpha):
    x, y_idx, y = _batch()
    for seed in range(5):
        torch.manual_seed(seed)
        x_ref, y_ref = v2.MixUp(alpha=alpha, num_classes=4)(x, y_idx)
        torch.manual_seed(seed)
        x_ours, y_ours = mixup(x, y, _beta(alpha))
        torch.testing.assert_close(x_ours, x_ref)
        torch.testing.assert_close(y_ours, y_ref)


def test_mixup_formula_with_index_and_soft_labels():
    g = _gen(4)
    x = torch.rand(5, 7, dtype=torch.float64, generator=g)  # feature vectors work too
    y = torch.softmax(torch.randn(5, 3, dtype=torch.float64, generator=g), dim=1)
    index = torch.tensor([2, 0, 4, 1, 3])
    lam = 0.3
    x_m, y_m = mixup(x, y, lam, index)
    for i in range(5):
        j = int(index[i])
        torch.testing.assert_close(x_m[i], lam * x[i] + (1 - lam) * x[j])
        torch.testing.assert_close(y_m[i], lam * y[i] + (1 - lam) * y[j])
    torch.testing.assert_close(y_m.sum(dim=1), torch.ones(5, dtype=torch.float64))  # still distributions


def test_mixup_and_cutmix_accept_a_beta_draw_as_lam():
    x, _, y = _batch()
    lam = torch.distributions.Beta(torch.tensor([0.4]), torch.tensor([0.4])).sample()  # shape (1,)
    torch.testing.assert_close(mixup(x, y, lam), mixup(x, y, float(lam)))
    torch.testing.assert_close(cutmix(x, y, lam, generator=_gen(1)), cutmix(x, y, float(lam), generator=_gen(1)))


def test_mixup_default_pairs_i_with_i_minus_1_and_endpoints():
    x, _, y = _batch(n=4)
    x_m, _ = mixup(x, y, 0.0)
    torch.testing.assert_close(x_m, x[[3, 0, 1, 2]])
    x_m, y_m = mixup(x, y, 1.0)
    torch.testing.assert_close(x_m, x)
    torch.testing.assert_close(y_m, y)


def test_mixup_integer_one_hot_non_contiguous_and_gradient():
    x, y_idx, y = _batch()
    x_nc = x.permute(0, 1, 3, 2)  # [N, C, W, H], not contiguous
    assert not x_nc.is_contiguous()
    ours_x, ours_y = mixup(x_nc, F.one_hot(y_idx, 4), 0.6)  # int64 one-hot labels
    ref_x, ref_y = mixup(x_nc.contiguous(), y, 0.6)
    torch.testing.assert_close(ours_x, ref_x)
    assert ours_y.dtype == torch.float32
    torch.testing.assert_close(ours_y, ref_y)
    xg = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    yg = torch.eye(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: mixup(t, yg, 0.7)[0], (xg,))


def test_mixup_bad_inputs():
    x, y_idx, y = _batch()
    with pytest.raises(ValueError, match=r"mixup: lam must be in \[0, 1\]; got 1.5"):
        mixup(x, y, 1.5)
    with pytest.raises(ValueError, match=r"mixup: lam must be in \[0, 1\]; got -0.1"):
        mixup(x, y, -0.1)
    with pytest.raises(ValueError, match=r"mixup: lam must be a finite number; got nan"):
        mixup(x, y, float("nan"))
    with pytest.raises(TypeError, match=r"mixup: lam must be a real number or a one-element tensor; got shape \(2,\)"):
        mixup(x, y, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"mixup: lam must be in \[0, 1\]; got 3.0"):
        mixup(x, y, torch.tensor(3.0))
    with pytest.raises(ValueError, match=r"mixup: y must be one-hot or soft labels of shape \(N, K\); got shape \(6,\)"):
        mixup(x, y_idx, 0.5)
    with pytest.raises(ValueError, match=r"mixup: y must have the batch size of x \(6\); got 5"):
        mixup(x, y[:5], 0.5)
    with pytest.raises(ValueError, match=r"mixup: index must have shape \(6,\)"):
        mixup(x, y, 0.5, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"mixup: index values must be in \[0, 5\]; got min 0 and max 6"):
        mixup(x, y, 0.5, torch.tensor([0, 1, 2, 3, 4, 6]))
    with pytest.raises(TypeError, match=r"mixup: index must be an integer tensor; got dtype torch.float32"):
        mixup(x, y, 0.5, torch.zeros(6))
    with pytest.raises(TypeError, match=r"mixup: x must be a floating-point tensor; got dtype torch.int64"):
        mixup(x.long(), y, 0.5)
    with pytest.raises(TypeError, match=r"mixup: x must be a torch.Tensor; got list"):
        mixup([1.0], y, 0.5)
    with pytest.raises(ValueError, match=r"mixup: x must be a batch \(N, \.\.\.\) with at least 2 dimensions"):
        mixup(torch.rand(6), y, 0.5)
    with pytest.raises(ValueError, match=r"mixup: x must hold at least one sample"):
        mixup(torch.rand(0, 3), y[:0], 0.5)
    with pytest.raises(TypeError, match=r"mixup: y must be a torch.Tensor; got ndarray"):
        mixup(x, y.numpy(), 0.5)
    with pytest.raises(TypeError, match=r"mixup: y must be a real tensor"):
        mixup(x, y.to(torch.complex64), 0.5)
    with pytest.raises(TypeError, match=r"mixup: index must be a torch.Tensor; got list"):
        mixup(x, y, 0.5, [0, 1, 2, 3, 4, 5])


# ----------------------------------------------------------------------------- cutmix


@pytest.mark.parametrize("hw", [(10, 12), (7, 5)])
def test_cutmix_equals_torchvision_cutmix(hw):
    x, y_idx, y = _batch(h=hw[0], w=hw[1])
    for seed in range(10):
        torch.manual_seed(seed)
        x_ref, y_ref = v2.CutMix(alpha=1.0, num_classes=4)(x, y_idx)
        torch.manual_seed(seed)
        x_ours, y_ours = cutmix(x, y, _beta(1.0))  # same draws from the global generator
        torch.testing.assert_close(x_ours, x_ref, rtol=0, atol=0)
        torch.testing.assert_close(y_ours, y_ref)


def test_cutmix_label_weight_is_the_pasted_area():
    n, h, w = 5, 9, 11
    x = torch.zeros(n, 1, h, w)
    partner = torch.ones(n, 1, h, w)
    both = torch.cat([x, partner])  # first half zeros, second half ones
    y = torch.eye(2).repeat_interleave(n, dim=0)  # zeros: class 0, ones: class 1
    index = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])  # pair each zero image with a one image
    for seed in range(30):
        lam = seed / 29
        x_m, y_m = cutmix(both, y, lam, index, generator=_gen(seed))
        pasted = x_m[:n].mean(dim=(1, 2, 3))  # fraction of pixels that came from the partner
        torch.testing.assert_close(y_m[:n, 1], pasted)
        torch.testing.assert_close(y_m[:n, 0], 1 - pasted)
        mask = x_m[0, 0] == 1
        rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
        if mask.any():  # one axis-aligned box, the same for every image
            assert mask.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert (x_m[:n] == x_m[:1]).all()
        # box side is 2 * int(0.5 * sqrt(1 - lam) * side) before clipping
        assert mask.any(dim=0).sum() <= 2 * int(0.5 * (1 - lam) ** 0.5 * w)
        assert mask.any(dim=1).sum() <= 2 * int(0.5 * (1 - lam) ** 0.5 * h)


def test_cutmix_lam_one_changes_nothing_and_generator_is_reproducible():
    x, _, y = _batch()
    x_m, y_m = cutmix(x, y, 1.0, generator=_gen(0))
    torch.testing.assert_close(x_m, x)
    torch.testing.assert_close(y_m, y)
    a = cutmix(x, y, 0.4, generator=_gen(7))
    b = cutmix(x, y, 0.4, generator=_gen(7))
    torch.testing.assert_close(a, b)


def test_cutmix_non_contiguous_and_gradient():
    x, _, y = _batch()
    x_nc = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    assert not x_nc.is_contiguous()
    torch.testing.assert_close(cutmix(x_nc, y, 0.3, generator=_gen(5)), cutmix(x, y, 0.3, generator=_gen(5)))
    xg = torch.rand(3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    yg = torch.eye(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: cutmix(t, yg, 0.5, generator=_gen(1))[0], (xg,))


def test_cutmix_bad_inputs():
    x, y_idx, y = _batch()
    with pytest.raises(ValueError, match=r"cutmix: lam must be in \[0, 1\]; got 2.0"):
        cutmix(x, y, 2.0)
    with pytest.raises(ValueError, match=r"cutmix: x must be a batch of images \(N, C, H, W\); got shape \(3, 10, 12\)"):
        cutmix(x[0], y, 0.5)
    with pytest.raises(ValueError, match=r"cutmix: y must be one-hot or soft labels of shape \(N, K\)"):
        cutmix(x, y_idx, 0.5)
    with pytest.raises(ValueError, match=r"cutmix: y must have the batch size of x \(6\); got 3"):
        cutmix(x, y[:3], 0.5)
    with pytest.raises(ValueError, match=r"cutmix: index values must be in \[0, 5\]; got min -1"):
        cutmix(x, y, 0.5, torch.tensor([-1, 0, 1, 2, 3, 4]))
    with pytest.raises(TypeError, match=r"cutmix: generator must be a torch\.Generator; got int"):
        cutmix(x, y, 0.5, generator=0)
    with pytest.raises(TypeError, match=r"cutmix: lam must be a real number; got str"):
        cutmix(x, y, "0.5")


# ----------------------------------------------------------------------------- sample_pairing


def test_sample_pairing_definition_with_index():
    x, y_idx, _ = _batch()
    index = torch.tensor([5, 4, 3, 2, 1, 0])
    x_p, y_p = sample_pairing(x, y_idx, index)
    for i in range(6):
        torch.testing.assert_close(x_p[i], (x[i] + x[5 - i]) / 2)
    assert y_p is y_idx  # the first image's label, untouched


def test_sample_pairing_default_is_a_seeded_permutation():
    x, _, y = _batch(n=8)
    x_p, y_p = sample_pairing(x, y, generator=_gen(3))
    perm = torch.randperm(8, generator=_gen(3))
    torch.testing.assert_close(x_p, (x + x[perm]) / 2)
    torch.testing.assert_close(y_p, y)
    torch.testing.assert_close(sample_pairing(x, y, generator=_gen(3))[0], x_p)


def test_sample_pairing_non_contiguous_and_gradient():
    x, y_idx, _ = _batch()
    x_nc = x[:, :, ::2, ::3]
    assert not x_nc.is_contiguous()
    index = torch.tensor([1, 2, 0, 4, 5, 3])
    torch.testing.assert_close(sample_pairing(x_nc, y_idx, index)[0], (x_nc + x_nc[index]) / 2)
    xg = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sample_pairing(t, torch.arange(3), torch.tensor([2, 0, 1]))[0], (xg,))


def test_sample_pairing_bad_inputs():
    x, y_idx, y = _batch()
    with pytest.raises(ValueError, match=r"sample_pairing: y must have shape \(N,\) or \(N, K\) with N = 6"):
        sample_pairing(x, y_idx[:4])
    with pytest.raises(ValueError, match=r"sample_pairing: y must have shape .*got \(6, 4, 1\)"):
        sample_pairing(x, y[..., None])
    with pytest.raises(ValueError, match=r"sample_pairing: index must have shape \(6,\)"):
        sample_pairing(x, y, torch.tensor([[0, 1, 2, 3, 4, 5]]))
    with pytest.raises(TypeError, match=r"sample_pairing: x must be a floating-point tensor"):
        sample_pairing(x.long(), y)
    with pytest.raises(TypeError, match=r"sample_pairing: y must be a torch.Tensor; got list"):
        sample_pairing(x, [0] * 6)
    with pytest.raises(TypeError, match=r"sample_pairing: generator must be a torch\.Generator; got int"):
        sample_pairing(x, y, generator=3)


# ----------------------------------------------------------------------------- smote


def _imbalanced(seed=0, sizes=(60, 25, 12), d=3):
    rs = np.random.RandomState(seed)
    X = np.concatenate([rs.randn(n, d) + 3 * c for c, n in enumerate(sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    perm = rs.permutation(len(y))  # classes interleaved, not sorted
    return X[perm], y[perm]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_smote_equals_imblearn_for_integer_seeds(k):
    X, y = _imbalanced()
    for seed in range(4):
        X_ref, y_ref = SMOTE(k_neighbors=k, random_state=seed).fit_resample(X, y)
        X_ours, y_ours = smote(X, y, k_neighbors=k, random_state=seed)
        np.testing.assert_allclose(X_ours, X_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(y_ours, y_ref)


def test_smote_counts_order_and_segments_with_string_labels_and_float32():
    X, y_int = _imbalanced(seed=1, sizes=(10, 40, 7))
    X = X.astype(np.float32)
    y = np.array(["cat", "dog", "eel"])[y_int]
    X_res, y_res = smote(X, y, k_neighbors=3, random_state=np.random.RandomState(0))
    assert X_res.dtype == np.float32 and y_res.dtype == y.dtype
    labels, counts = np.unique(y_res, return_counts=True)
    assert labels.tolist() == ["cat", "dog", "eel"] and counts.tolist() == [40, 40, 40]
    _, ref_counts = np.unique(SMOTE(k_neighbors=3).fit_resample(X, y)[1], return_counts=True)
    assert counts.tolist() == ref_counts.tolist()
    np.testing.assert_array_equal(X_res[: len(X)], X)  # originals first, unchanged
    np.testing.assert_array_equal(y_res[: len(y)], y)
    # each synthetic row lies on a segment x_i -> x_nn with x_nn among the 3 nearest of x_i's class
    for row, label in zip(X_res[len(X) :], y_res[len(y) :]):
        Xc = X[y == label].astype(np.float64)
        found = False
        for i, xi in enumerate(Xc):
            d = np.linalg.norm(Xc - xi, axis=1)
            d[i] = np.inf
            for j in np.argsort(d)[:3]:
                seg = Xc[j] - xi
                u = float(np.dot(row - xi, seg) / np.dot(seg, seg))
                if 0 <= u < 1 + 1e-6 and np.allclose(xi + u * seg, row, atol=1e-5):
                    found = True
        assert found


def test_smote_integer_features_become_float_and_balanced_input_is_returned():
    X = np.array([[0, 0], [1, 0], [0, 1], [5, 5], [6, 5], [5, 6], [6, 6]])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    X_res, y_res = smote(X, y, k_neighbors=2, random_state=0)
    assert X_res.dtype == np.float64 and X_res.shape == (8, 2) and y_res.tolist()[-1] == 0
    X_bal, y_bal = smote(X[:6].astype(float), y[:6], k_neighbors=2, random_state=0)
    np.testing.assert_array_equal(X_bal, X[:6])
    np.testing.assert_array_equal(y_bal, y[:6])


def test_smote_non_contiguous_input():
    X, y = _imbalanced(seed=2, d=4)
    X_nc = np.asfortranarray(X)[:, ::-1]
    assert not X_nc.flags["C_CONTIGUOUS"]
    X_ref, _ = SMOTE(random_state=3).fit_resample(X_nc, y)
    np.testing.assert_allclose(smote(X_nc, y, random_state=3)[0], X_ref, rtol=1e-12, atol=1e-12)


def test_smote_bad_inputs():
    X, y = _imbalanced()
    with pytest.raises(ValueError, match=r"smote: class 2 has 4 samples; SMOTE with k_neighbors=5 needs at least 6"):
        smote(np.concatenate([X[y != 2], X[y == 2][:4]]), np.concatenate([y[y != 2], [2] * 4]))
    with pytest.raises(ValueError, match=r"smote: X must be 2-D \(n_samples, n_features\); got shape \(97,\)"):
        smote(X[:, 0], y)
    with pytest.raises(ValueError, match=r"smote: y must be 1-D with one label per row of X \(97,\); got shape \(96,\)"):
        smote(X, y[:-1])
    with pytest.raises(ValueError, match=r"smote: y must contain at least 2 classes; got 1"):
        smote(X, np.zeros(len(y), dtype=int))
    with pytest.raises(ValueError, match=r"smote: k_neighbors must be >= 1; got 0"):
        smote(X, y, k_neighbors=0)
    with pytest.raises(TypeError, match=r"smote: k_neighbors must be an int; got float"):
        smote(X, y, k_neighbors=2.0)
    with pytest.raises(TypeError, match=r"smote: X must be a numpy\.ndarray; got Tensor"):
        smote(torch.from_numpy(X), y)
    with pytest.raises(TypeError, match=r"smote: y must be a numpy\.ndarray; got list"):
        smote(X, y.tolist())
    with pytest.raises(TypeError, match=r"smote: X must hold real numbers; got dtype <U1"):
        smote(np.full((4, 2), "a"), np.array([0, 0, 1, 1]))
    with pytest.raises(TypeError, match=r"smote: random_state must be an int; got str"):
        smote(X, y, random_state="0")
