"""Unit tests of the book's own tooling: the notebook tool and the Sphinx extension."""

from __future__ import annotations

import json

import nbformat

import bookext
import nbtool


def test_normalize_setup_cell_inserts_before_first_code_cell_and_is_idempotent():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# 标题 Title"), nbformat.v4.new_code_cell("x = 1")]
    )
    nbtool.normalize_setup_cell(nb)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[1].source == nbtool.setup_cell_source()
    assert nb.cells[1].metadata["tags"] == ["remove-cell"]
    nb.cells[1].source = "# 环境准备 Setup: an outdated version"
    nbtool.normalize_setup_cell(nb)
    assert len(nb.cells) == 3 and nb.cells[1].source == nbtool.setup_cell_source()


def test_clean_metadata_drops_volatile_fields():
    cell = nbformat.v4.new_code_cell("1", metadata={"execution": {"iopub.status.busy": "t"}, "tags": ["hide-input"]})
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {}
    nbtool.clean_metadata(nb)
    assert nb.cells[0].metadata == {"tags": ["hide-input"]}
    assert "widgets" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"


def test_execute_runs_a_notebook_and_saves_outputs(tmp_path):
    code = "import os, matplotlib\nprint(6 * 7, os.environ['OMP_NUM_THREADS'], matplotlib.get_backend())"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    seconds, peak = nbtool.execute(path, save=True)
    saved = nbformat.read(path, as_version=4)
    assert saved.cells[0].source == nbtool.setup_cell_source() and saved.cells[0].outputs == []
    assert saved.cells[1].outputs[0]["text"] == "42 1 module://matplotlib_inline.backend_inline\n"
    assert [c.execution_count for c in saved.cells] == [1, 2]
    assert seconds > 0 and peak > 10 * 2**20


def test_wrap_language_cells_adds_divs_only_to_tagged_markdown():
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {"tags": ["lang-zh"]}, "source": ["中文 $x$\n"]},
            {"cell_type": "markdown", "metadata": {"tags": ["lang-en"]}, "source": "English $x$"},
            {"cell_type": "markdown", "metadata": {}, "source": "# 标题 Title"},
            {"cell_type": "code", "metadata": {"tags": ["lang-en"]}, "source": "1", "outputs": [], "execution_count": 1},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    out = json.loads(bookext.wrap_language_cells(json.dumps(nb), "doc"))["cells"]
    assert out[0]["source"] == '<div class="lang-zh" lang="zh-Hans">\n\n中文 $x$\n\n</div>\n'
    assert out[1]["source"] == '<div class="lang-en" lang="en">\n\nEnglish $x$\n\n</div>\n'
    assert out[2]["source"] == "# 标题 Title"
    assert out[3]["source"] == "1"


def test_glossary_terms_parse_table_rows(tmp_path):
    page = tmp_path / "glossary.md"
    page.write_text(
        "# 术语表 Glossary\n\n| 中文 | English |\n| --- | --- |\n| 损失函数 | loss |\n| 相对熵 / KL散度 | KL |\n| tensor | t |\n",
        encoding="utf-8",
    )
    assert bookext.glossary_terms(page) == ["中文", "损失函数", "相对熵", "KL散度"]


def test_nbval_sanitizers_touch_only_volatile_text():
    import configparser
    import re
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).with_name("nbval_sanitize.cfg"), encoding="utf-8")
    patterns = [re.compile(config[s]["regex"]) for s in config.sections()]
    volatile = ["<Figure size 600x360 with 1 Axes>", "<object at 0x7f3a2b1c>", "12.34 s (wall clock)"]
    stable = ["loss 0.1234 acc 97.5%", "took 3 s", "0x1F", "<Figure>", "1000.4076", "epoch 5/20"]
    for text in volatile:
        assert any(p.search(text) for p in patterns), text
    for text in stable:
        assert not any(p.search(text) for p in patterns), text
