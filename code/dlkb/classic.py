r"""Image classification before deep learning: hand-crafted features and their encoding.

The traditional pipeline has four stages: low-level features (HOG, LBP, SIFT),
feature encoding (vector quantization into a bag of visual words, sparse coding,
Fisher vectors), spatial pooling (spatial pyramid matching) and a classifier
(a linear or kernel SVM). This module implements the stages the book runs:
HOG and LBP from scratch (checked against scikit-image) and a bag of visual
words over dense patches with a k-means codebook and a spatial pyramid.

Everything is NumPy in, NumPy out. Shape letters: N images, H height, W width,
D feature length, K visual words, O orientation bins, P sampling points.

Papers: Dalal & Triggs 2005 (HOG); Ojala, Pietikäinen & Mäenpää 2002 (LBP);
Lowe 2004 (SIFT); Csurka et al. 2004 (bag of visual words);
Lazebnik, Schmid & Ponce 2006 (spatial pyramid matching); Wang et al. 2010
(locality-constrained linear coding).
"""

from __future__ import annotations


import numpy as np

from dlkb import _validate as _v

__all__ = ["hog_features", "lbp_histogram", "BagOfVisualWords"]


def _check_images(images: object, caller: str) -> np.ndarray:
    """Return ``images`` as float64 (N, H, W), or raise naming ``caller``."""
    _v.instance("images", images, caller=caller, types=np.ndarray)
    if images.ndim != 3:
        raise ValueError(f"{caller}: images must have shape (N, H, W); got {images.shape}")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise TypeError(f"{caller}: images must hold real numbers; got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{caller}: images must hold at least one image; got shape {images.shape}")
    return images.astype(np.float64, copy=False)


def hog_features(
    images: np.ndarray,
    *,
    orientations: int = 9,
    pixels_per_cell: tuple[int, int] = (4, 4),
    cells_per_block: tuple[int, int] = (2, 2),
) -> np.ndarray:
    r"""Histograms of oriented gradients of a batch of grey images (Dalal & Triggs 2005).

    For every pixel, central differences give the gradient
    :math:`g_x = I(r, c+1) - I(r, c-1)`, :math:`g_y = I(r+1, c) - I(r-1, c)` (zero on the
    border), its magnitude :math:`m = \sqrt{g_x^2 + g_y^2}` and its unsigned orientation
    :math:`\theta = \operatorname{atan2}(g_y, g_x) \bmod 180°`. Each cell sums the magnitudes
    falling into each of ``orientations`` equal bins of :math:`[0°, 180°)` (hard voting,
    divided by the cell area); overlapping blocks of cells are then normalized with
    L2-Hys: :math:`v \leftarrow v / \sqrt{\lVert v\rVert_2^2 + \epsilon^2}`, clip at 0.2,
    normalize again (:math:`\epsilon = 10^{-5}`).

    Follows ``skimage.feature.hog`` (its default ``block_norm="L2-Hys"``), which deviates from
    the paper: no Gaussian window in a block and no bilinear vote between neighbouring bins
    and cells. Like it, cell sums are accumulated in float32 and float32 images give float32
    features, so the two agree to the last bits of floating point.

    Args:
        images (ndarray[N, H, W]): grey images (integer or float).
        orientations: number of orientation bins O.
        pixels_per_cell: cell size ``(rows, cols)`` in pixels; pixels beyond the last whole cell are ignored.
        cells_per_block: block size ``(rows, cols)`` in cells; blocks move one cell at a time.

    Returns:
        ndarray[N, D] (float32 for float16/float32 images, else float64), row ``i`` equal to
        ``skimage.feature.hog(images[i], ...)``,
        with ``D = B_r B_c b_r b_c O`` for ``B_r × B_c`` blocks of ``b_r × b_c`` cells.
    """
    caller = "hog_features"
    x = _check_images(images, caller)
    orientations = _v.integer("orientations", orientations, caller=caller, minimum=1)
    c_row, c_col = _v.pair("pixels_per_cell", pixels_per_cell, caller=caller, minimum=1)
    b_row, b_col = _v.pair("cells_per_block", cells_per_block, caller=caller, minimum=1)
    n, h, w = x.shape
    n_cells_row, n_cells_col = h // c_row, w // c_col
    n_blocks_row, n_blocks_col = n_cells_row - b_row + 1, n_cells_col - b_col + 1
    if n_blocks_row <= 0 or n_blocks_col <= 0:
        raise ValueError(
            f"{caller}: images must be at least {b_row * c_row}x{b_col * c_col} pixels for "
            f"pixels_per_cell={(c_row, c_col)} and cells_per_block={(b_row, b_col)}; got {h}x{w}"
        )

    # 1. Gradients by central differences, zero on the border, in the images' float precision.
    ftype = np.float32 if images.dtype in (np.float16, np.float32) else np.float64  # skimage's precision
    x = images.astype(ftype)
    g_row = np.zeros_like(x)  # [N, H, W]
    g_col = np.zeros_like(x)
    g_row[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    g_row, g_col = g_row.astype(np.float64), g_col.astype(np.float64)
    magnitude = np.hypot(g_col, g_row)  # [N, H, W]
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180  # [N, H, W] in [0, 180]

    # 2. Hard votes into O bins [180 i / O, 180 (i + 1) / O); the edges are float32 as in skimage.
    edges = np.float32(180.0 / orientations) * np.arange(orientations + 1, dtype=np.float32)
    votes = (angle[..., None] >= edges[:-1]) & (angle[..., None] < edges[1:])  # [N, H, W, O]
    weighted = votes * magnitude[..., None]  # [N, H, W, O]
    cells = weighted[:, : n_cells_row * c_row, : n_cells_col * c_col]
    cells = cells.reshape(n, n_cells_row, c_row, n_cells_col, c_col, orientations)
    # Sum each cell pixel by pixel in row-major order, rounding to float32 after every addition,
    # exactly as scikit-image's compiled loop does; then divide by the cell area.
    total = np.zeros((n, n_cells_row, n_cells_col, orientations), dtype=np.float32)
    for i in range(c_row):
        for j in range(c_col):
            total = (total + cells[:, :, i, :, j, :]).astype(np.float32)
    hist = (total / np.float32(c_row * c_col)).astype(np.float64)  # [N, cells_r, cells_c, O]

    # 3. Overlapping blocks (stride one cell), L2-Hys normalized.
    windows = np.lib.stride_tricks.sliding_window_view(hist, (b_row, b_col), axis=(1, 2))
    blocks = windows.transpose(0, 1, 2, 4, 5, 3)  # [N, B_r, B_c, b_r, b_c, O]
    eps = 1e-5
    norm = np.sqrt((blocks**2).sum(axis=(3, 4, 5), keepdims=True) + eps**2)
    blocks = np.minimum(blocks / norm, 0.2)
    blocks = blocks / np.sqrt((blocks**2).sum(axis=(3, 4, 5), keepdims=True) + eps**2)
    return blocks.reshape(n, -1).astype(ftype, copy=False)


def _lbp_codes(x: np.ndarray, P: int, R: float) -> np.ndarray:
    """Uniform LBP codes of float64 images [N, H, W] (the rule of scikit-image, method="uniform")."""
    n, h, w = x.shape
    angles = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    rp = np.round(-R * np.sin(angles), 5)  # row offsets of the P circle points
    cp = np.round(R * np.cos(angles), 5)  # column offsets
    rows = np.arange(h, dtype=np.float64)[:, None]  # [H, 1]
    cols = np.arange(w, dtype=np.float64)[None, :]  # [1, W]

    def pixel(ri: np.ndarray, ci: np.ndarray) -> np.ndarray:
        """x[:, ri, ci] with zeros outside the image; ri, ci int arrays [H, W]."""
        inside = (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
        return np.where(inside, x[:, ri.clip(0, h - 1), ci.clip(0, w - 1)], 0.0)  # [N, H, W]

    bits = np.empty((P, n, h, w), dtype=np.int8)
    for i in range(P):
        r = rows + rp[i] + 0 * cols  # [H, W], sampling position of point i
        c = cols + cp[i] + 0 * rows
        r0, c0 = np.floor(r), np.floor(c)
        dr, dc = r - r0, c - c0
        r0, c0, r1, c1 = r0.astype(int), c0.astype(int), np.ceil(r).astype(int), np.ceil(c).astype(int)
        top = (1 - dc) * pixel(r0, c0) + dc * pixel(r0, c1)  # bilinear interpolation
        bottom = (1 - dc) * pixel(r1, c0) + dc * pixel(r1, c1)
        texture = (1 - dr) * top + dr * bottom  # [N, H, W]
        bits[i] = texture - x >= 0
    # Number of 0/1 changes along the P points (scikit-image counts P - 1 neighbouring pairs).
    changes = (bits[1:] != bits[:-1]).sum(axis=0)  # [N, H, W]
    return np.where(changes <= 2, bits.sum(axis=0), P + 1)  # codes in 0..P+1


def lbp_histogram(images: np.ndarray, *, P: int = 8, R: float = 1.0) -> np.ndarray:
    r"""Normalized histograms of uniform local binary patterns (Ojala et al. 2002).

    Each pixel is compared with ``P`` points on a circle of radius ``R`` around it
    (bilinear interpolation, zeros outside the image): bit :math:`s_p = [I_p - I_c \ge 0]`.
    A pattern with at most two 0/1 changes is *uniform* and coded by its number of ones
    (0…P, the rotation-invariant "riu2" operator of the paper); every other pattern gets code
    :math:`P + 1`. Like ``skimage.feature.local_binary_pattern(..., method="uniform")``,
    the changes are counted along the P − 1 neighbouring pairs, without closing the circle.

    Args:
        images (ndarray[N, H, W]): grey images; integer images avoid spurious ties
            from rounding (an interpolated value equal to the centre).
        P: number of points on the circle.
        R: radius of the circle in pixels.

    Returns:
        ndarray[N, P + 2] (float64): per image, the fraction of pixels with each code 0…P+1.
    """
    caller = "lbp_histogram"
    x = _check_images(images, caller)
    P = _v.integer("P", P, caller=caller, minimum=1)
    R = _v.real("R", R, caller=caller, low=0.0, low_open=True)
    codes = _lbp_codes(x, P, R)  # [N, H, W]
    n = x.shape[0]
    counts = np.zeros((n, P + 2))
    np.add.at(counts, (np.repeat(np.arange(n), codes[0].size), codes.reshape(-1)), 1.0)
    return counts / codes[0].size


class BagOfVisualWords:
    r"""Bag of visual words over dense patches with a spatial pyramid (scikit-learn style).

    ``fit`` cuts every ``patch_size`` window (stride 1) out of the training images, uses
    the raw pixels of a window as its descriptor and learns a codebook of ``n_words``
    centres with k-means (Csurka et al. 2004). ``transform`` assigns each patch of an image
    to its nearest word (vector quantization) and, for each level ``g`` in ``levels``,
    counts the words in each cell of a ``g × g`` grid over the image (by patch centre),
    as in spatial pyramid matching (Lazebnik et al. 2006). Counts are divided by the
    number of patches in the image, so each level sums to 1. Deviation: levels are not
    re-weighted (the paper weights level :math:`\ell` by :math:`2^{\ell - L}` for the
    histogram-intersection kernel); an SVM on top learns its own scale.

    With ``encoding="llc"`` each patch is instead coded by locality-constrained linear
    coding in its approximated form (Wang et al. 2010, Sec. 3.3): the descriptor
    :math:`\mathbf x` is rebuilt from its ``knn`` nearest words :math:`B_x` with weights
    that sum to 1, :math:`\min_{\mathbf c} \lVert \mathbf x - B_x^\top \mathbf c \rVert^2`
    s.t. :math:`\mathbf 1^\top \mathbf c = 1`, solved as
    :math:`(C + \lambda \operatorname{tr}(C) I)\,\mathbf c = \mathbf 1` with
    :math:`C = (B_x - \mathbf 1 \mathbf x^\top)(B_x - \mathbf 1 \mathbf x^\top)^\top`, then
    normalised; the other words get 0. The codes of each cell are max-pooled and the
    whole pyramid vector of an image is L2-normalised, as in the paper.

    Args:
        n_words: codebook size K.
        patch_size: patch height and width in pixels (an int or ``(rows, cols)``).
        levels: grid sizes of the pyramid, e.g. ``(1, 2)`` for the whole image plus 2×2 cells.
        random_state: seed of k-means (None: not reproducible).
        encoding: ``"hard"`` (vector quantization, counted) or ``"llc"`` (see above).
        knn: number of nearest words of an LLC code (1 ≤ knn ≤ n_words; the paper uses 5).
        llc_lambda: regularisation :math:`\lambda \ge 0` of the LLC solve (relative to tr C).

    Attributes:
        codebook_ (ndarray[K, rows · cols]): the visual words, after ``fit``.

    Output of ``transform``: ndarray[N, K · Σ g²].
    """

    def __init__(
        self,
        n_words: int,
        *,
        patch_size: int | tuple[int, int],
        levels: tuple[int, ...] = (1,),
        random_state: int | None = None,
        encoding: str = "hard",
        knn: int = 5,
        llc_lambda: float = 1e-4,
    ) -> None:
        caller = "BagOfVisualWords"
        self.n_words = _v.integer("n_words", n_words, caller=caller, minimum=1)
        self.patch_size = _v.pair("patch_size", patch_size, caller=caller, minimum=1)
        self.levels = _v.int_sequence("levels", levels, caller=caller, minimum=1)
        if random_state is not None:
            _v.integer("random_state", random_state, caller=caller, minimum=0)
        self.random_state = random_state
        self.encoding = _v.choice("encoding", encoding, caller=caller, choices=("hard", "llc"))
        # knn only matters for LLC, where it cannot exceed the number of words
        self.knn = _v.integer("knn", knn, caller=caller, minimum=1, maximum=self.n_words if encoding == "llc" else None)
        self.llc_lambda = _v.real("llc_lambda", llc_lambda, caller=caller, low=0.0)

    def _patches(self, images: object, caller: str) -> tuple[np.ndarray, tuple[int, int]]:
        """Dense patches [N, n_r, n_c, rows · cols] and the grid shape (n_r, n_c)."""
        x = _check_images(images, caller)
        ph, pw = self.patch_size
        if ph > x.shape[1] or pw > x.shape[2]:
            raise ValueError(
                f"{caller}: patch_size {self.patch_size} is larger than the images {x.shape[1]}x{x.shape[2]}"
            )
        windows = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(1, 2))  # [N, n_r, n_c, ph, pw]
        n, n_r, n_c = windows.shape[:3]
        return windows.reshape(n, n_r, n_c, ph * pw), (n_r, n_c)

    def fit(self, images: np.ndarray, y: object = None) -> BagOfVisualWords:
        """Learn the codebook with k-means on every dense patch of ``images`` (ndarray[N, H, W]).

        ``y`` is ignored (it is there so the object fits in a scikit-learn pipeline).
        """
        from sklearn.cluster import KMeans  # noqa: PLC0415 - heavy import, only when used

        patches, _ = self._patches(images, "BagOfVisualWords.fit")
        descriptors = patches.reshape(-1, patches.shape[-1])  # [N n_r n_c, rows · cols]
        if descriptors.shape[0] < self.n_words:
            raise ValueError(
                f"BagOfVisualWords.fit: need at least n_words={self.n_words} patches; got {descriptors.shape[0]}"
            )
        kmeans = KMeans(n_clusters=self.n_words, n_init=1, random_state=self.random_state)
        self.codebook_ = kmeans.fit(descriptors).cluster_centers_  # [K, rows · cols]
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Spatial-pyramid histograms of visual words, ndarray[N, K · Σ g²] (see the class docstring)."""
        caller = "BagOfVisualWords.transform"
        if not hasattr(self, "codebook_"):
            from sklearn.exceptions import NotFittedError  # noqa: PLC0415 - a ValueError subclass

            raise NotFittedError(f"{caller}: call fit before transform")
        patches, (n_r, n_c) = self._patches(images, caller)
        n = patches.shape[0]
        # Vector quantization: nearest word in Euclidean distance, ||p||² - 2 p·c + ||c||².
        d2 = (self.codebook_**2).sum(axis=1) - 2 * patches @ self.codebook_.T  # [N, n_r, n_c, K]
        words = d2.argmin(axis=-1)  # [N, n_r, n_c]
        ph, pw = self.patch_size
        h, w = n_r + ph - 1, n_c + pw - 1  # image size
        centre_r = np.arange(n_r) + (ph - 1) / 2  # patch centres in pixel coordinates
        centre_c = np.arange(n_c) + (pw - 1) / 2
        if self.encoding == "llc":
            codes = self._llc_codes(patches, d2)  # [N, n_r, n_c, K]
            pooled = []
            for g in self.levels:
                cell_r = np.minimum((centre_r + 0.5) * g // h, g - 1).astype(int)
                cell_c = np.minimum((centre_c + 0.5) * g // w, g - 1).astype(int)
                for a in range(g):  # a loop over the g x g cells, not over patches
                    for b in range(g):
                        block = codes[:, cell_r == a][:, :, cell_c == b]  # [N, r_ab, c_ab, K]
                        empty = block.shape[1] * block.shape[2] == 0
                        pooled.append(np.zeros((n, self.n_words)) if empty else block.max(axis=(1, 2)))
            features = np.concatenate(pooled, axis=1)  # [N, K · Σ g²]
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            return features / np.where(norms > 0, norms, 1.0)
        features = []
        for g in self.levels:
            cell_r = np.minimum((centre_r + 0.5) * g // h, g - 1).astype(int)  # [n_r], cell row of each patch
            cell_c = np.minimum((centre_c + 0.5) * g // w, g - 1).astype(int)
            cell = (cell_r[:, None] * g + cell_c[None, :]) * self.n_words  # [n_r, n_c]
            index = np.arange(n)[:, None, None] * (g * g * self.n_words) + cell + words  # [N, n_r, n_c]
            counts = np.bincount(index.reshape(-1), minlength=n * g * g * self.n_words)
            features.append(counts.reshape(n, g * g * self.n_words) / (n_r * n_c))
        return np.concatenate(features, axis=1)

    def _llc_codes(self, patches: np.ndarray, d2: np.ndarray) -> np.ndarray:
        """Approximated LLC codes, ndarray[..., K], from descriptors [..., D] and squared distances [..., K]."""
        shape = patches.shape[:-1]
        x = patches.reshape(-1, patches.shape[-1])  # [M, D]
        nearest = np.argsort(d2.reshape(-1, self.n_words), axis=1, kind="stable")[:, : self.knn]  # [M, k]
        z = self.codebook_[nearest] - x[:, None, :]  # [M, k, D], words shifted to the descriptor
        c = z @ z.transpose(0, 2, 1)  # [M, k, k] local covariance
        c = c + self.llc_lambda * np.trace(c, axis1=1, axis2=2)[:, None, None] * np.eye(self.knn)
        # The tiny ridge only matters when C is exactly singular (a descriptor equal to a word, lambda = 0).
        weights = np.linalg.solve(c + 1e-12 * np.eye(self.knn), np.ones((x.shape[0], self.knn, 1)))[..., 0]  # [M, k]
        weights = weights / weights.sum(axis=1, keepdims=True)
        codes = np.zeros((x.shape[0], self.n_words))
        np.put_along_axis(codes, nearest, weights, axis=1)
        return codes.reshape(*shape, self.n_words)

    def fit_transform(self, images: np.ndarray, y: object = None) -> np.ndarray:
        """``fit(images)`` then ``transform(images)``."""
        return self.fit(images, y).transform(images)
