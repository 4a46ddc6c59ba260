"""Figures: Chinese text in matplotlib, and the book's figure style.

Call :func:`use_book_style` once at the top of a notebook. It registers an
open-licence CJK font (Noto Sans SC, SIL Open Font License, shipped in the
``pylopdf-fonts-zh-cn`` wheel that ``dlkb`` depends on; a system CJK font is used
when the wheel is absent), so Chinese labels render instead of boxes ("tofu"),
the same on a laptop, in CI and in Colab.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.figure
from matplotlib import font_manager

from dlkb import _validate as _v

__all__ = ["use_book_style", "cjk_font_path", "bilingual", "show_photo", "interactive", "BOOK_COLORS"]

# A colour cycle that stays distinguishable in grey-scale print and for the common
# forms of colour blindness (Okabe & Ito, "Color Universal Design", 2008).
BOOK_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

# Families tried, in order, when the wheel's font is not installed.
_SYSTEM_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
)


def cjk_font_path() -> Path:
    """Path of the CJK font the book uses.

    Returns:
        The Noto Sans SC file from ``pylopdf-fonts-zh-cn`` if installed, else the
        first system font of a known CJK family.

    Raises:
        RuntimeError: if no CJK font can be found, with the command that installs one.
    """
    try:
        import pylopdf_fonts_zh_cn  # noqa: PLC0415 - optional at import time

        path = Path(pylopdf_fonts_zh_cn.sans_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    by_name = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for family in _SYSTEM_CJK_FAMILIES:
        if family in by_name:
            return Path(by_name[family])
    raise RuntimeError(
        "dlkb.plot: no CJK font found, so Chinese text would render as boxes. "
        "Install one with `pip install pylopdf-fonts-zh-cn` (Noto Sans SC) and restart the kernel."
    )


def use_book_style(*, dpi: int = 100) -> str:
    """Make Chinese text render and apply the book's figure style.

    Registers the CJK font with matplotlib's font manager (no cache rebuild or
    kernel restart needed), puts it first in the sans-serif list with DejaVu Sans
    as the fallback for glyphs it lacks, and sets sizes, grid and colours.

    Args:
        dpi: resolution of figures shown inline.

    Returns:
        The family name of the CJK font in use (for example ``"Noto Sans SC"``).
    """
    dpi = _v.integer("dpi", dpi, caller="use_book_style", minimum=50, maximum=400)
    path = cjk_font_path()
    if str(path) not in {f.fname for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(str(path))
    family = font_manager.FontProperties(fname=str(path)).get_name()

    # Importing pyplot first lets the inline backend apply its own defaults before ours.
    import matplotlib.pyplot  # noqa: F401, PLC0415

    from cycler import cycler  # noqa: PLC0415 - a matplotlib dependency

    matplotlib.rcParams.update(
        {
            "font.family": "sans-serif",
            "font.sans-serif": [family, "DejaVu Sans"],
            "mathtext.fontset": "dejavusans",
            "axes.unicode_minus": True,
            "figure.figsize": (6.0, 3.6),
            "figure.dpi": dpi,
            "figure.autolayout": True,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": cycler(color=list(BOOK_COLORS)),
            "legend.frameon": False,
            "image.cmap": "viridis",
            "savefig.bbox": "tight",
        }
    )
    return family


def bilingual(zh: str, en: str, *, sep: str = " ") -> str:
    """A figure label in both languages, Chinese first: ``bilingual("损失", "loss") == "损失 loss"``."""
    for name, value in (("zh", zh), ("en", en), ("sep", sep)):
        _v.instance(name, value, caller="bilingual", types=str)
    return f"{zh}{sep}{en}"


def show_photo(fig=None, *, quality: int = 85) -> None:
    """Display a figure of photographs as a JPEG and close it.

    Line plots stay PNG (sharp edges, few colours); photographs compress far better
    as JPEG, which keeps a chapter page light on a slow connection. Returns ``None``,
    so a cell ending with ``show_photo()`` displays the image once.

    Args:
        fig: the figure (the current one by default).
        quality: JPEG quality, 1–95.
    """
    import io  # noqa: PLC0415

    import matplotlib.pyplot as plt  # noqa: PLC0415

    quality = _v.integer("quality", quality, caller="show_photo", minimum=1, maximum=95)
    if fig is None:
        fig = plt.gcf()
    _v.instance("fig", fig, caller="show_photo", types=matplotlib.figure.Figure)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=fig.dpi, pil_kwargs={"quality": quality, "optimize": True})
    plt.close(fig)
    try:
        from IPython.display import Image, display  # noqa: PLC0415
    except ImportError:  # pragma: no cover - plain Python
        return
    display(Image(data=buffer.getvalue(), format="jpeg"))


# Button icons of matplotlib's player, as plain characters (see interactive()).
_PLAYER_SYMBOLS = {
    "fa-minus": "\u2212",
    "fa-fast-backward": "\u21e4",
    "fa-step-backward": "\u2039",
    "fa-pause": "\u2016",
    "fa-play": "\u25b6",
    "fa-step-forward": "\u203a",
    "fa-fast-forward": "\u21e5",
    "fa-plus": "+",
}


def interactive(fig, update, frames, *, interval_ms: int = 400, max_kib: int = 500):
    """A figure with a slider and play controls that works without a kernel.

    ``update(value)`` redraws ``fig`` for one value of the parameter; each value in
    ``frames`` becomes one embedded PNG frame of matplotlib's
    :meth:`~matplotlib.animation.Animation.to_jshtml` player. The result is plain
    HTML and JavaScript with no request to another host, so the slider works on
    the static website (also offline), in Jupyter and in Colab. The figure is
    closed, so it is not shown a second time as a static image.

    Args:
        fig: the figure to animate.
        update: called with each frame value, in order; it changes the artists of ``fig``.
        frames: the parameter values, at least 2 (a list, tuple or range).
        interval_ms: delay between frames when playing, in milliseconds.
        max_kib: size budget of the HTML in KiB; a larger result raises, so a
            page stays light on a slow connection.

    Returns:
        An :class:`IPython.display.HTML` object; make it the last expression of a cell.

    Raises:
        TypeError: ``fig`` is not a figure, ``update`` is not callable, or
            ``frames`` is not a list, tuple or range.
        ValueError: fewer than 2 frames, or the HTML exceeds ``max_kib``.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.animation import FuncAnimation  # noqa: PLC0415

    caller = "interactive"
    _v.instance("fig", fig, caller=caller, types=matplotlib.figure.Figure)
    if not callable(update):
        raise TypeError(f"{caller}: update must be callable; got {type(update).__name__}")
    _v.instance("frames", frames, caller=caller, types=(list, tuple, range))
    if len(frames) < 2:
        raise ValueError(f"{caller}: frames must hold at least 2 values; got {len(frames)}")
    interval_ms = _v.integer("interval_ms", interval_ms, caller=caller, minimum=1)
    max_kib = _v.integer("max_kib", max_kib, caller=caller, minimum=1)
    animation = FuncAnimation(fig, update, frames=list(frames), interval=interval_ms, repeat=False)
    html = animation.to_jshtml(default_mode="once")
    plt.close(fig)
    # matplotlib links Font Awesome from a CDN for its button icons; a reader behind a
    # firewall, or offline, would get empty buttons. Plain characters need no font file.
    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*"\s*/?>', "", html)
    html = re.sub(
        r'<i class="fa (fa-[a-z-]+)(?: fa-flip-horizontal)?"></i>',
        lambda match: f'<span aria-hidden="true">{_PLAYER_SYMBOLS[match.group(1)]}</span>'
        if "flip" not in match.group(0)
        else '<span aria-hidden="true">\u25c0</span>',
        html,
    )
    if "://" in html:
        raise RuntimeError(f"{caller}: the player still references another host; matplotlib's template changed")
    size_kib = len(html.encode()) / 1024
    if size_kib > max_kib:
        raise ValueError(
            f"{caller}: the player is {size_kib:.0f} KiB, over max_kib={max_kib}; "
            "use fewer frames, a smaller figure or a lower dpi"
        )
    try:
        from IPython.display import HTML  # noqa: PLC0415
    except ImportError:  # pragma: no cover - plain Python
        return html
    return HTML(html)
