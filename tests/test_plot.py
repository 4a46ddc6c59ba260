import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

import dlkb.plot  # noqa: E402


def test_cjk_font_is_an_open_licence_noto_font():
    path = dlkb.plot.cjk_font_path()
    assert path.is_file()
    assert font_manager.FontProperties(fname=str(path)).get_name() == "Noto Sans SC"


def test_chinese_text_renders_without_missing_glyphs():
    family = dlkb.plot.use_book_style()
    assert family == "Noto Sans SC"
    assert matplotlib.rcParams["font.sans-serif"][0] == family
    # A Chinese character must resolve to the CJK font file, not DejaVu (boxes).
    found = font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.sans-serif"]))
    assert found == str(dlkb.plot.cjk_font_path())
    with warnings.catch_warnings():
        # matplotlib warns "Glyph ... missing from font(s)" when it draws a box.
        warnings.simplefilter("error")
        fig, ax = plt.subplots()
        ax.plot([-1, 0, 1], [1, 0, 1])
        ax.set_title(dlkb.plot.bilingual("损失函数与交叉熵", "loss and cross-entropy"))
        ax.set_xlabel(r"误差 $\epsilon$ error −1")
        ax.legend(["焦点损失 focal loss"])
        fig.canvas.draw()
        plt.close(fig)


def test_missing_glyph_is_detected_by_this_test_setup():
    # Guard: the check above could not fail if matplotlib stopped warning. A glyph
    # that no font has must still raise under the same filter.
    dlkb.plot.use_book_style()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig, ax = plt.subplots()
        ax.set_title("\U0001d11e\U000f0000")  # musical G clef and a private-use plane character
        with pytest.raises(UserWarning, match="missing from font"):
            fig.canvas.draw()
        plt.close(fig)


def test_use_book_style_validates_dpi():
    with pytest.raises(TypeError, match="use_book_style: dpi must be an int; got float"):
        dlkb.plot.use_book_style(dpi=100.0)
    with pytest.raises(ValueError, match=r"use_book_style: dpi must be in \[50, 400\]; got 10"):
        dlkb.plot.use_book_style(dpi=10)


def test_bilingual_label():
    assert dlkb.plot.bilingual("损失", "loss") == "损失 loss"
    assert dlkb.plot.bilingual("损失", "loss", sep="\n") == "损失\nloss"
    with pytest.raises(TypeError, match="bilingual: en must be str; got int"):
        dlkb.plot.bilingual("损失", 1)


def test_missing_font_gives_actionable_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wheel(name, *args, **kwargs):
        if name == "pylopdf_fonts_zh_cn":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wheel)
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [])
    with pytest.raises(RuntimeError, match="pip install pylopdf-fonts-zh-cn"):
        dlkb.plot.cjk_font_path()


def test_show_photo_displays_a_jpeg_and_closes_the_figure(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pytest

    from dlkb.plot import show_photo

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).random((64, 64, 3)))
    assert show_photo(fig, quality=80) is None  # displayed once, nothing returned to display again
    (image,) = shown
    assert image.format == "jpeg" and image.data[:2] == b"\xff\xd8"  # JPEG magic
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match=r"show_photo: quality must be in \[1, 95\]; got 0"):
        show_photo(plt.figure(), quality=0)
    with pytest.raises(TypeError, match=r"show_photo: fig must be Figure; got str"):
        show_photo("fig")
    plt.close("all")


def _ring_player(**kwargs):
    import re  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    (line,) = ax.plot([], [])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)

    def update(value):
        line.set_data([0, value], [0, value])

    html = dlkb.plot.interactive(fig, update, [0.2, 0.5, 0.9], **kwargs).data
    return html, re, fig


def test_interactive_embeds_one_distinct_png_per_frame_and_no_remote_request():
    html, re, fig = _ring_player()
    frames = re.findall(r'frames\[(\d)\] = "data:image/png;base64,([^"]+)"', html)
    assert [index for index, _ in frames] == ["0", "1", "2"]
    assert len({data for _, data in frames}) == 3  # each frame draws its own value
    assert "http://" not in html and "https://" not in html and "src=\"//" not in html
    assert 'type="range"' in html  # the slider
    assert not plt.fignum_exists(fig.number)  # closed: not shown again as a static image


def test_interactive_is_reproducible_up_to_the_sanitized_element_ids():
    import configparser  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    config = configparser.ConfigParser()
    config.read(Path(__file__).with_name("nbval_sanitize.cfg"))
    section = config["matplotlib-jshtml-ids"]
    first, re, _ = _ring_player()
    second, _, _ = _ring_player()
    assert first != second  # matplotlib draws a fresh uuid4 each time
    clean = [re.sub(section["regex"], section["replace"], html) for html in (first, second)]
    assert clean[0] == clean[1]
    assert re.search(r"[0-9a-f]{32}", clean[0]) is None  # every id was replaced


def test_interactive_rejects_bad_input_and_an_oversized_player():
    fig, _ = plt.subplots()
    with pytest.raises(TypeError, match=r"interactive: fig must be"):
        dlkb.plot.interactive("figure", print, [1, 2])
    with pytest.raises(TypeError, match=r"interactive: update must be callable; got int"):
        dlkb.plot.interactive(fig, 3, [1, 2])
    with pytest.raises(TypeError, match=r"interactive: frames must be"):
        dlkb.plot.interactive(fig, print, iter([1, 2]))
    with pytest.raises(ValueError, match=r"interactive: frames must hold at least 2 values; got 1"):
        dlkb.plot.interactive(fig, print, [1])
    with pytest.raises(ValueError, match=r"interactive: the player is \d+ KiB, over max_kib=1;"):
        dlkb.plot.interactive(fig, lambda value: None, [1, 2], max_kib=1)
    plt.close("all")
