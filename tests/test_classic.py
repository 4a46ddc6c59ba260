"""Tests of dlkb.classic against scikit-image and scikit-learn, and slow loop references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.feature import hog, local_binary_pattern
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError

from dlkb.classic import BagOfVisualWords, hog_features, lbp_histogram


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---- hog_features ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "orientations", "ppc", "cpb"),
    [((3, 8, 8), 9, (4, 4), (2, 2)), ((2, 15, 11), 7, (3, 2), (2, 3)), ((2, 12, 12), 12, (2, 2), (3, 3))],
)
def test_hog_matches_skimage(rng, shape, orientations, ppc, cpb):
    images = rng.random(shape)
    ours = hog_features(images, orientations=orientations, pixels_per_cell=ppc, cells_per_block=cpb)
    ref = np.stack(
        [hog(im, orientations=orientations, pixels_per_cell=ppc, cells_per_block=cpb) for im in images]
    )
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.float64
    # Only the summation order of the block norms differs: agreement to ~1e-16.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_hog_float32_images_match_skimage_exactly(rng):
    images = rng.random((3, 12, 10)).astype(np.float32)
    ours = hog_features(images, orientations=8, pixels_per_cell=(3, 3), cells_per_block=(2, 2))
    ref = np.stack([hog(im, orientations=8, pixels_per_cell=(3, 3), cells_per_block=(2, 2)) for im in images])
    assert ours.dtype == ref.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)


def test_hog_default_arguments_and_integer_images(rng):
    images = rng.integers(0, 17, (4, 8, 8))
    ours = hog_features(images)
    ref = np.stack([hog(im.astype(float), pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for im in images])
    assert ours.shape == (4, 36)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_hog_non_contiguous_input(rng):
    base = rng.random((10, 12, 8))
    images = base.transpose(0, 2, 1)[::2]  # [5, 8, 12], not contiguous
    assert not images.flags["C_CONTIGUOUS"]
    ref = np.stack([hog(im, pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for im in images])
    np.testing.assert_allclose(hog_features(images), ref, rtol=0, atol=1e-6)


def test_hog_is_invariant_to_contrast_scaling(rng):
    # Block normalization: multiplying the image by a constant changes nothing (up to epsilon).
    images = rng.random((2, 8, 8))
    np.testing.assert_allclose(hog_features(3 * images), hog_features(images), atol=1e-6)


def test_hog_validation():
    good = np.zeros((2, 8, 8))
    with pytest.raises(TypeError, match=r"hog_features: images must be a numpy.ndarray; got list"):
        hog_features([[[0.0]]])
    with pytest.raises(ValueError, match=r"hog_features: images must have shape \(N, H, W\); got \(8, 8\)"):
        hog_features(np.zeros((8, 8)))
    with pytest.raises(TypeError, match=r"hog_features: images must hold real numbers; got dtype complex128"):
        hog_features(good.astype(complex))
    with pytest.raises(ValueError, match=r"hog_features: images must hold at least one image"):
        hog_features(np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match=r"images must be at least 8x8 pixels .* got 7x8"):
        hog_features(np.zeros((1, 7, 8)))
    with pytest.raises(TypeError, match=r"hog_features: orientations must be an int; got float"):
        hog_features(good, orientations=9.0)
    with pytest.raises(ValueError, match=r"hog_features: orientations must be >= 1; got 0"):
        hog_features(good, orientations=0)
    with pytest.raises(ValueError, match=r"hog_features: pixels_per_cell must be .*; got \(4, 0\)"):
        hog_features(good, pixels_per_cell=(4, 0))
    with pytest.raises(ValueError, match=r"hog_features: cells_per_block must be .*; got \(2, 2, 2\)"):
        hog_features(good, cells_per_block=(2, 2, 2))


# ---- lbp_histogram -----------------------------------------------------------------------------


def _lbp_reference(images, P, R):
    rows = []
    for im in images:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-image warns on float images
            codes = local_binary_pattern(im, P, R, method="uniform").astype(int)
        rows.append(np.bincount(codes.ravel(), minlength=P + 2) / codes.size)
    return np.stack(rows)


@pytest.mark.parametrize(("P", "R"), [(8, 1.0), (4, 2.0), (12, 1.5), (16, 3)])
def test_lbp_matches_skimage_on_integer_images(rng, P, R):
    images = rng.integers(0, 6, (4, 9, 13)).astype(np.uint8)  # many ties between neighbours
    ours = lbp_histogram(images, P=P, R=R)
    assert ours.shape == (4, P + 2)
    np.testing.assert_array_equal(ours, _lbp_reference(images, P, R))
    np.testing.assert_allclose(ours.sum(axis=1), 1.0)


def test_lbp_matches_skimage_on_float_images(rng):
    images = rng.random((3, 10, 10))
    np.testing.assert_array_equal(lbp_histogram(images, P=8, R=1.0), _lbp_reference(images, 8, 1.0))


def test_lbp_non_contiguous_input(rng):
    images = rng.integers(0, 4, (6, 11, 7)).astype(np.int64)[::2, :, ::-1]
    assert not images.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(lbp_histogram(images), _lbp_reference(images, 8, 1.0))


def test_lbp_flat_image_is_all_ones_code():
    # Every neighbour equals the centre (inside) or is 0 < centre (outside): uniform codes only.
    images = np.full((1, 5, 5), 3, dtype=np.uint8)
    hist = lbp_histogram(images)
    assert hist[0, 8] == pytest.approx(9 / 25)  # the 3x3 interior: all eight bits set


def test_lbp_validation():
    with pytest.raises(TypeError, match=r"lbp_histogram: images must be a numpy.ndarray; got Tensor"):
        import torch

        lbp_histogram(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"lbp_histogram: images must have shape \(N, H, W\); got \(1, 1, 4, 4\)"):
        lbp_histogram(np.zeros((1, 1, 4, 4)))
    with pytest.raises(TypeError, match=r"lbp_histogram: P must be an int; got float"):
        lbp_histogram(np.zeros((1, 4, 4)), P=8.0)
    with pytest.raises(ValueError, match=r"lbp_histogram: P must be >= 1; got 0"):
        lbp_histogram(np.zeros((1, 4, 4)), P=0)
    with pytest.raises(TypeError, match=r"lbp_histogram: R must be a real number; got str"):
        lbp_histogram(np.zeros((1, 4, 4)), R="1")
    with pytest.raises(ValueError, match=r"lbp_histogram: R must be > 0; got -1\.0"):
        lbp_histogram(np.zeros((1, 4, 4)), R=-1.0)


# ---- BagOfVisualWords --------------------------------------------------------------------------


def _bovw_reference(images, codebook, patch, levels):
    """Loop over images, patches and pyramid cells."""
    ph, pw = patch
    k = codebook.shape[0]
    out = []
    for im in images:
        h, w = im.shape
        feats = []
        for g in levels:
            hist = np.zeros((g, g, k))
            for r in range(h - ph + 1):
                for c in range(w - pw + 1):
                    p = im[r : r + ph, c : c + pw].reshape(-1)
                    word = np.argmin(((codebook - p) ** 2).sum(axis=1))
                    cr = min(int((r + ph / 2) * g // h), g - 1)  # cell holding the patch centre
                    cc = min(int((c + pw / 2) * g // w), g - 1)
                    hist[cr, cc, word] += 1
            feats.append(hist.reshape(-1) / ((h - ph + 1) * (w - pw + 1)))
        out.append(np.concatenate(feats))
    return np.stack(out)


def test_bovw_codebook_is_kmeans_on_dense_patches(rng):
    images = rng.random((6, 8, 8))
    bovw = BagOfVisualWords(5, patch_size=3, random_state=0).fit(images)
    patches = np.stack(
        [images[i, r : r + 3, c : c + 3].reshape(-1) for i in range(6) for r in range(6) for c in range(6)]
    )
    ref = KMeans(n_clusters=5, n_init=1, random_state=0).fit(patches).cluster_centers_
    np.testing.assert_allclose(bovw.codebook_, ref)


@pytest.mark.parametrize(("patch", "levels", "size"), [(3, (1, 2), (8, 8)), ((2, 3), (1, 2, 3), (9, 7))])
def test_bovw_transform_matches_loop_reference(rng, patch, levels, size):
    train = rng.random((5, *size))
    test = rng.random((3, *size))
    bovw = BagOfVisualWords(4, patch_size=patch, levels=levels, random_state=1).fit(train)
    ours = bovw.transform(test)
    pair = (patch, patch) if isinstance(patch, int) else patch
    assert ours.shape == (3, 4 * sum(g * g for g in levels))
    np.testing.assert_allclose(ours, _bovw_reference(test, bovw.codebook_, pair, levels))
    # Each pyramid level is a histogram over all patches: it sums to 1.
    start = 0
    for g in levels:
        np.testing.assert_allclose(ours[:, start : start + 4 * g * g].sum(axis=1), 1.0)
        start += 4 * g * g


def test_bovw_fit_transform_and_non_contiguous(rng):
    images = rng.random((8, 10, 8)).transpose(0, 2, 1)  # [8, 8, 10]
    a = BagOfVisualWords(3, patch_size=(3, 3), levels=(1, 2), random_state=0).fit_transform(images)
    b = BagOfVisualWords(3, patch_size=(3, 3), levels=(1, 2), random_state=0).fit(images.copy()).transform(images)
    np.testing.assert_allclose(a, b)


def test_bovw_validation(rng):
    with pytest.raises(TypeError, match=r"BagOfVisualWords: n_words must be an int; got float"):
        BagOfVisualWords(4.0, patch_size=3)
    with pytest.raises(ValueError, match=r"BagOfVisualWords: n_words must be >= 1; got 0"):
        BagOfVisualWords(0, patch_size=3)
    with pytest.raises(ValueError, match=r"BagOfVisualWords: patch_size must be .*; got \(3, -1\)"):
        BagOfVisualWords(4, patch_size=(3, -1))
    with pytest.raises(ValueError, match=r"BagOfVisualWords: levels must not be empty; got \(\)"):
        BagOfVisualWords(4, patch_size=3, levels=())
    with pytest.raises(ValueError, match=r"BagOfVisualWords: levels\[0\] must be >= 1; got 0"):
        BagOfVisualWords(4, patch_size=3, levels=(0,))
    with pytest.raises(TypeError, match=r"BagOfVisualWords: random_state must be an int; got float 0\.5"):
        BagOfVisualWords(4, patch_size=3, random_state=0.5)
    bovw = BagOfVisualWords(4, patch_size=5)
    with pytest.raises(NotFittedError, match=r"BagOfVisualWords.transform: call fit before transform"):
        bovw.transform(rng.random((2, 8, 8)))
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(ValueError, match=r"BagOfVisualWords.fit: patch_size \(5, 5\) is larger than the images 4x8"):
        bovw.fit(rng.random((2, 4, 8)))
    with pytest.raises(ValueError, match=r"BagOfVisualWords.fit: images must have shape \(N, H, W\)"):
        bovw.fit(rng.random((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"BagOfVisualWords.fit: need at least n_words=4 patches; got 1"):
        bovw.fit(rng.random((1, 5, 5)))
    bovw.fit(rng.random((2, 8, 8)))
    with pytest.raises(ValueError, match=r"BagOfVisualWords.transform: patch_size \(5, 5\) is larger"):
        bovw.transform(rng.random((2, 4, 4)))


# ---- LLC encoding ---------------------------------------------------------------------------------


def _llc_slow(bovw, images):
    """Per-patch LLC codes (explicit constrained least squares), max pooling per cell, L2 norm."""
    ph, pw = bovw.patch_size
    n, h, w = images.shape
    feats = []
    for img in images:
        codes = {}
        for r in range(h - ph + 1):
            for c in range(w - pw + 1):
                x = img[r : r + ph, c : c + pw].reshape(-1).astype(np.float64)
                d = ((bovw.codebook_ - x) ** 2).sum(1)
                near = np.argsort(d, kind="stable")[: bovw.knn]
                z = bovw.codebook_[near] - x
                cov = z @ z.T
                cov = cov + bovw.llc_lambda * np.trace(cov) * np.eye(bovw.knn)
                wgt = np.linalg.solve(cov + 1e-12 * np.eye(bovw.knn), np.ones(bovw.knn))
                code = np.zeros(bovw.n_words)
                code[near] = wgt / wgt.sum()
                codes[(r, c)] = code
        parts = []
        for g in bovw.levels:
            for a in range(g):
                for b in range(g):
                    members = [v for (r, c), v in codes.items()
                               if min(int((r + (ph - 1) / 2 + 0.5) * g // h), g - 1) == a
                               and min(int((c + (pw - 1) / 2 + 0.5) * g // w), g - 1) == b]
                    parts.append(np.max(members, axis=0) if members else np.zeros(bovw.n_words))
        f = np.concatenate(parts)
        feats.append(f / np.linalg.norm(f))
    return np.stack(feats)


@pytest.mark.parametrize("knn, levels", [(5, (1, 2)), (1, (1,)), (3, (1, 2, 3))])
def test_llc_encoding_matches_slow_formula(knn, levels):
    rng = np.random.default_rng(0)
    images = rng.random((6, 7, 8))
    bovw = BagOfVisualWords(8, patch_size=3, levels=levels, random_state=0, encoding="llc", knn=knn).fit(images)
    fast = bovw.transform(images[:3])
    np.testing.assert_allclose(fast, _llc_slow(bovw, images[:3]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0)


def test_llc_codes_sum_to_one_reconstruct_and_reduce_to_hard_assignment():
    rng = np.random.default_rng(1)
    images = rng.random((5, 6, 6))
    bovw = BagOfVisualWords(6, patch_size=2, random_state=0, encoding="llc", knn=3).fit(images)
    patches, _ = bovw._patches(images, "test")
    d2 = (bovw.codebook_**2).sum(1) - 2 * patches @ bovw.codebook_.T
    codes = bovw._llc_codes(patches, d2)
    np.testing.assert_allclose(codes.sum(-1), 1.0)
    assert ((codes != 0).sum(-1) <= 3).all()
    # the local reconstruction is no worse than the nearest word alone
    recon = codes @ bovw.codebook_
    nearest = bovw.codebook_[d2.argmin(-1)]
    assert (((recon - patches) ** 2).sum(-1) <= ((nearest - patches) ** 2).sum(-1) + 1e-9).all()
    one = BagOfVisualWords(6, patch_size=2, random_state=0, encoding="llc", knn=1).fit(images)
    np.testing.assert_array_equal(one._llc_codes(patches, d2).argmax(-1), d2.argmin(-1))


def test_llc_validation():
    with pytest.raises(ValueError, match=r"BagOfVisualWords: encoding must be one of \('hard', 'llc'\); got 'soft'"):
        BagOfVisualWords(4, patch_size=3, encoding="soft")
    with pytest.raises(ValueError, match=r"BagOfVisualWords: knn must be in \[1, 4\]; got 5"):
        BagOfVisualWords(4, patch_size=3, encoding="llc", knn=5)
    with pytest.raises(ValueError, match=r"BagOfVisualWords: llc_lambda must be >= 0; got -1.0"):
        BagOfVisualWords(4, patch_size=3, encoding="llc", knn=2, llc_lambda=-1.0)
