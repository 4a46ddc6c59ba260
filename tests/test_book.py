"""Book-structure checks: toc, tags, languages, outputs, setup cell, images, citations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import bookext
import nbtool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = nbtool.all_notebooks()
NB_IDS = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]
HAN = re.compile(r"[\u3400-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")
# Hot-linked images: a markdown image or <img> whose source is on another host.
REMOTE_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*(https?:)?//|<img[^>]+src=[\"'](https?:)?//", re.I)
# Hosts the seed notes hot-link images from; no link to them at all.
IMAGE_HOSTS = re.compile(r"(csdnimg|cnblogs\.com/blog|zhimg\.com|jianshu\.io|imgur\.com|sinaimg|byteimg|upload-images)", re.I)


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "chapters/ holds no notebook"


def test_every_notebook_is_in_the_toc_and_every_entry_exists():
    entries = toc_files()
    assert len(entries) == len(set(entries)), "a toc entry is listed twice"
    for entry in entries:
        matches = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert sum(m.is_file() for m in matches) == 1, f"_toc.yml entry {entry!r} has no single .md/.ipynb file"
    listed = {(ROOT / e).with_suffix(".ipynb") for e in entries}
    missing = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p not in listed]
    assert not missing, f"notebooks missing from _toc.yml: {missing}"


def test_allowed_tags_are_defined_once():
    assert nbtool.ALLOWED_TAGS == bookext.ALLOWED_TAGS
    assert '"raises-exception"' not in Path(bookext.__file__).read_text(encoding="utf-8")  # imported, not copied


def test_search_dictionary_is_written_into_the_build_not_the_temp_dir(tmp_path, root):
    import tempfile
    from types import SimpleNamespace

    before = set(Path(tempfile.gettempdir()).glob("*.jieba.txt"))
    app = SimpleNamespace(srcdir=str(root), doctreedir=str(tmp_path / ".doctrees"))
    config = SimpleNamespace(html_search_options=None)
    bookext.on_config_inited(app, config)
    path = Path(config.html_search_options["dict"])
    assert path.parent == tmp_path / ".doctrees" and "损失函数" in path.read_text(encoding="utf-8").split()
    assert set(Path(tempfile.gettempdir()).glob("*.jieba.txt")) == before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_cell_tags_are_allowed(path):
    for i, cell in enumerate(cells(path)):
        unknown = set(cell.get("metadata", {}).get("tags", [])) - nbtool.ALLOWED_TAGS
        assert not unknown, f"cell {i} has tags {sorted(unknown)} outside {sorted(nbtool.ALLOWED_TAGS)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_first_code_cell_is_the_canonical_setup_cell(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    assert code, "no code cell"
    assert text(code[0]) == nbtool.setup_cell_source(), "first code cell differs from `python tools/nbtool.py setup-cell`"
    assert code[0]["metadata"].get("tags") == ["remove-cell"]
    assert code[0]["outputs"] == [], "the setup cell must print nothing in CI"
    hidden = [i for i, c in enumerate(code) if "remove-cell" in c.get("metadata", {}).get("tags", [])]
    assert hidden == [0], f"only the setup cell may be removed from the page; also removed: code cells {hidden[1:]}"
    assert not any(text(c).strip().startswith("# placeholder") for c in code), "a placeholder cell is left"


def test_setup_cell_installs_from_the_configured_repository():
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    source = nbtool.setup_cell_source()
    assert f"git+{url}" in source
    assert 'find_spec("dlkb") is None' in source
    compile(source, "setup", "exec")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_executed_top_to_bottom_with_saved_outputs(path):
    code = [c for c in cells(path) if c["cell_type"] == "code" and text(c).strip()]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"execution counts {counts}: re-run with `make run NB={path.relative_to(ROOT)}`"
    assert any(c["outputs"] for c in code), "no saved outputs"
    for i, c in enumerate(code):
        tags = c.get("metadata", {}).get("tags", [])
        errors = [o for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors or "raises-exception" in tags, f"code cell {i} saved an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_language_cells_come_in_pairs_without_headings(path):
    all_cells = cells(path)
    for i, cell in enumerate(all_cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "markdown":
            continue
        body = text(cell)
        if "lang-zh" in tags:
            assert i + 1 < len(all_cells) and "lang-en" in all_cells[i + 1].get("metadata", {}).get("tags", []), (
                f"lang-zh cell {i} is not followed by its lang-en partner"
            )
            assert HAN.search(body), f"lang-zh cell {i} has no Chinese"
            partner = text(all_cells[i + 1])
            assert body.count("<details") == partner.count("<details"), f"cells {i}/{i + 1}: answers differ in number"
            assert body.count("$$") == partner.count("$$"), f"cells {i}/{i + 1}: display formulas differ in number"
            cites = sorted(re.findall(r"\{cite[a-z:]*\}`([^`]+)`", body))
            assert cites == sorted(re.findall(r"\{cite[a-z:]*\}`([^`]+)`", partner)), f"cells {i}/{i + 1}: citations differ"
        if "lang-en" in tags:
            assert i > 0 and "lang-zh" in all_cells[i - 1].get("metadata", {}).get("tags", []), (
                f"lang-en cell {i} does not follow a lang-zh cell"
            )
        if {"lang-zh", "lang-en"} & set(tags):
            assert not re.search(r"^#{1,6} ", body, re.M), f"heading inside language cell {i}"
        elif re.search(r"\S", body):
            # Untagged markdown is for bilingual headings only.
            for line in body.splitlines():
                assert re.match(r"^#{1,6} ", line) or not line.strip(), (
                    f"untagged markdown cell {i} holds prose; tag it lang-zh/lang-en: {line[:60]!r}"
                )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_headings_are_bilingual(path):
    for cell in cells(path):
        if cell["cell_type"] == "markdown":
            for heading in re.findall(r"^#{1,6} (.+)$", text(cell), re.M):
                assert HAN.search(heading) and LATIN.search(heading), f"heading not bilingual: {heading!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_chapter_ends_with_interview_questions(path):
    headings = [h for c in cells(path) if c["cell_type"] == "markdown" for h in re.findall(r"^## (.+)$", text(c), re.M)]
    assert headings and headings[-1] == "面试题 Interview questions"


def test_no_hotlinked_images_or_third_party_image_hosts():
    sources = [*NOTEBOOKS, *ROOT.glob("*.md")]
    for path in sources:
        if path.name == "README.md":
            continue
        content = path.read_text(encoding="utf-8")
        assert not REMOTE_IMAGE.search(content), f"{path.name}: image hot-linked from another host"
        assert not IMAGE_HOSTS.search(content), f"{path.name}: link to a third-party image host"


def test_no_output_is_ignored_by_nbval():
    for path in NOTEBOOKS:
        content = path.read_text(encoding="utf-8")
        assert "NBVAL_IGNORE_OUTPUT" not in content and "nbval-ignore-output" not in content, path.name


def test_every_citation_is_in_references_bib():
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(encoding="utf-8"), re.M))
    cited = set()
    for path in [*NOTEBOOKS, *(p for p in ROOT.glob("*.md") if p.name != "README.md")]:
        for group in re.findall(r"\{cite[a-z:]*\}`([^`]+)`", path.read_text(encoding="utf-8")):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "the book cites nothing"
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_markdown_pages_pair_their_language_blocks():
    for path in ROOT.glob("*.md"):
        if path.name == "README.md":
            continue
        content = path.read_text(encoding="utf-8")
        assert content.count('<div class="lang-zh"') == content.count('<div class="lang-en"'), path.name
        for heading in re.findall(r"^#{1,6} (.+)$", content, re.M):
            assert HAN.search(heading) and LATIN.search(heading), f"{path.name}: heading not bilingual: {heading!r}"


def test_glossary_terms_feed_the_search_dictionary():
    terms = bookext.glossary_terms(ROOT / "glossary.md")
    assert {"损失函数", "交叉熵", "焦点损失", "批量归一化"} <= set(terms)
    assert len(terms) == len(set(terms)) > 100


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_figure_cells_saved_their_figures(path):
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code" and re.search(r"\bplt\.show\(\)|\.savefig\(", text(cell)):
            kinds = {k for o in cell["outputs"] for k in o.get("data", {})}
            assert "image/png" in kinds or "image/svg+xml" in kinds, f"cell {i} draws a figure but saved none"


def test_references_bib_parses_with_unique_keys():
    import collections

    from pybtex.database import parse_file

    text = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,]+),", text, re.M)
    duplicates = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not duplicates, f"duplicate keys: {duplicates}"
    database = parse_file(str(ROOT / "references.bib"))  # raises on unbalanced braces
    assert len(database.entries) == len(keys)
    for key, entry in database.entries.items():
        assert "title" in entry.fields and "year" in entry.fields and entry.persons.get("author"), key


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_runs_standalone(path):
    """In Colab only the notebook exists: no reading repository files, no downloads."""
    forbidden = re.compile(
        r"\bopen\(|Path\(|read_csv|np\.load\(|torch\.load\(|urlretrieve|urlopen|requests\.|\.\./|download=True|pretrained=True|weights=\""
    )
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code" and not text(cell).startswith("# 环境准备 Setup"):
            match = forbidden.search(text(cell))
            assert not match, f"code cell {i} uses {match.group(0)!r}; notebooks must run from the dlkb package alone"


def test_interview_bank_collects_every_question_of_every_chapter():
    """Count the questions independently of the extension and compare with the generated bank."""
    expected = 0
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        inside, zh, en = False, 0, 0
        for cell in nb["cells"]:
            src = text(cell)
            if cell["cell_type"] != "markdown":
                continue
            if src.lstrip().startswith("#"):
                inside = src.strip() == "## 面试题 Interview questions"
                continue
            tags = cell.get("metadata", {}).get("tags", [])
            if inside and "lang-zh" in tags:
                zh += len(re.findall(r"\*\*问题 ?\d+[.．]\*\*", src))
            if inside and "lang-en" in tags:
                en += len(re.findall(r"\*\*Question \d+\.\*\*", src))
        assert zh == en, f"{path.name}: {zh} Chinese and {en} English interview questions"
        assert zh >= 2, f"{path.name}: a chapter ends with at least two interview questions"
        expected += en
    body, read = bookext.interview_bank_markdown(ROOT)
    assert body.count('class="dlkb-bank-question"') == expected
    assert f'data-total="{expected}"' in body
    assert sorted(read) == sorted(NOTEBOOKS)
    # Every question links back to its chapter (one {doc} link per chapter section).
    assert body.count("{doc}`→ ") == len(NOTEBOOKS)


def test_bibliography_parses_without_duplicates():
    """A merge that drops a brace breaks the whole site build; catch it here, fast."""
    import pybtex.database

    text = (ROOT / "references.bib").read_text(encoding="utf-8")
    db = pybtex.database.parse_string(text, "bibtex")
    keys = re.findall(r"^@\w+\{([^,]+),", text, re.M)
    assert len(keys) == len(set(keys)) == len(db.entries)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_prose_never_mentions_the_source_notes(path):
    """Readers do not have the author's notes; a correction says "a common claim / 常见说法" instead."""
    pattern = re.compile(r"source notes|the notes say|源笔记|原始资料|原始笔记|原笔记", re.I)
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "markdown":
            assert not pattern.search(text(cell)), f"cell {i} mentions the source notes"


# --- Knowledge base: cross-references, interactive figures ------------------------------------

# A markdown link from one chapter to another, optionally to a section: [text](other.ipynb#slug).
CHAPTER_LINK = re.compile(r"\]\(([A-Za-z0-9_-]+)\.ipynb(?:#([^)\s]+))?\)")


def markdown_links(path: Path) -> list[tuple[str, str | None]]:
    return [
        (m.group(1), m.group(2))
        for cell in cells(path)
        if cell["cell_type"] == "markdown"
        for m in CHAPTER_LINK.finditer(text(cell))
    ]


def heading_slugs(path: Path) -> set[str]:
    from myst_parser.mdit_to_docutils.base import default_slugify  # noqa: PLC0415 - the slugs Sphinx uses

    slugs = set()
    for cell in cells(path):
        if cell["cell_type"] == "markdown":
            for line in text(cell).splitlines():
                match = re.match(r"(#{1,3}) (.+)", line)  # myst_heading_anchors: 3 in _config.yml
                if match:
                    slugs.add(default_slugify(match.group(2).strip()))
    return slugs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_links_to_other_chapters_resolve_to_a_chapter_and_a_heading(path):
    for target, anchor in markdown_links(path):
        other = path.parent / f"{target}.ipynb"
        assert other.is_file(), f"{path.name} links to {target}.ipynb, which does not exist"
        if anchor is not None:
            assert anchor in heading_slugs(other), (
                f"{path.name} links to {target}.ipynb#{anchor}; no heading of level 1-3 there has that slug"
            )


# Where one chapter builds on another, each links to the other (both directions).
CROSS_REFERENCES = [
    ("losses", "optimization"),  # focal loss <-> class imbalance
    ("losses", "detection"),  # focal loss, smooth L1, IoU losses <-> detectors
    ("optimization", "detection"),  # class imbalance <-> foreground/background imbalance
    ("pooling", "detection"),  # RoI pooling / RoI Align <-> two-stage detectors
    ("cnn", "transformer"),  # normalisation layers <-> LayerNorm in the Transformer
    ("augmentation", "fewlabels-semi-supervised"),  # augmentation <-> weak/strong augmentation
    ("rnn", "transformer"),  # recurrence and its limits <-> attention
]


@pytest.mark.parametrize(("one", "other"), CROSS_REFERENCES, ids=[f"{a}<->{b}" for a, b in CROSS_REFERENCES])
def test_chapters_that_build_on_each_other_link_both_ways(one, other):
    for source, target in ((one, other), (other, one)):
        targets = {t for t, _ in markdown_links(ROOT / "chapters" / f"{source}.ipynb")}
        assert target in targets, f"chapters/{source}.ipynb never links to {target}.ipynb"


# Chapters without a parameter worth a slider: the setup guide and the timing appendix.
NOT_INTERACTIVE = {"how-to-use.ipynb", "performance.ipynb"}
ANIMATION = 'class="animation"'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_each_chapter_has_an_interactive_figure_within_budget(path):
    players = [
        "".join(html) if isinstance(html, list) else html
        for cell in cells(path)
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
        for html in [output.get("data", {}).get("text/html", "")]
        if ANIMATION in ("".join(html) if isinstance(html, list) else html)
    ]
    if path.name in NOT_INTERACTIVE:
        return
    assert players, f"{path.name} has no interactive figure (dlkb.plot.interactive)"
    for html in players:
        assert len(html.encode()) <= 500 * 1024, f"{path.name}: an interactive figure is over 500 KiB"
        assert "://" not in html, f"{path.name}: an interactive figure references another host"


# Every interview question of the user's notes (../shared/seeds/, not shipped with the book) has a
# question of its own in some chapter, answered there in the book's words. Each row: the topic as
# the notes ask it, the chapter, and a pattern the Chinese and the English question must match.
NOTES_QUESTIONS = [
    ("why odd kernel sizes", "cnn", r"奇数", r"odd"),
    ("why BN works", "cnn", r"BN.*(为什么|为何).*有效|批量归一化.*为什么.*有效", r"why does batch ?norm\w* work|why does BN work"),
    ("BN before or after the activation", "cnn", r"激活.*(之前|前面|前).*(之后|后面|后)|(之前|前).*还是.*(之后|后)", r"before or after the activation"),
    ("why tanh converges faster than sigmoid", "cnn", r"tanh.*sigmoid.*(收敛|快)", r"tanh.*(faster|converge).*sigmoid|tanh.*sigmoid.*(faster|converge)"),
    ("why RNNs suffer more than CNNs from vanishing/exploding gradients", "rnn", r"RNN.*CNN.*梯度", r"RNN.*CNN.*gradient|RNNs?.*(vanish|explod).*CNN"),
    ("how LSTM mitigates the gradient problem", "rnn", r"LSTM.*缓解梯度消失", r"LSTM.*vanishing"),
    ("why both sigmoid and tanh inside an LSTM", "rnn", r"sigmoid.*tanh", r"sigmoid.*tanh"),
    ("why divide by sqrt(d_k)", "transformer", r"\\sqrt\{d_k\}", r"\\sqrt\{d_k\}"),
    ("why LayerNorm rather than BatchNorm in the Transformer", "transformer", r"层归一化.*批量归一化", r"layer norm\w*.*batch norm\w*"),
    ("receptive field and output size of a convolution", "cnn", r"感受野", r"receptive field"),
    ("focal loss: what gamma and alpha do", "losses", r"焦点损失.*\\gamma", r"\\gamma.*focal loss|focal loss.*\\gamma"),
    ("Dice and IoU losses", "losses", r"Dice", r"Dice"),
    ("PCA", "fewlabels-transfer", r"PCA", r"PCA"),
    ("mode collapse", "generative-gan", r"模式崩溃", r"mode collapse"),
]


@pytest.mark.parametrize(
    ("topic", "chapter", "zh", "en"), NOTES_QUESTIONS, ids=[row[0] for row in NOTES_QUESTIONS]
)
def test_every_interview_question_of_the_notes_is_asked_in_a_chapter(topic, chapter, zh, en):
    _, questions = bookext.interview_questions(ROOT / "chapters" / f"{chapter}.ipynb")
    # Only the question itself (the first line), not its answer, must ask it.
    asked = [(q_zh.splitlines()[0], q_en.splitlines()[0]) for q_zh, q_en in questions]
    assert any(
        re.search(zh, q_zh, re.I) and re.search(en, q_en, re.I) for q_zh, q_en in asked
    ), f"no interview question of chapters/{chapter}.ipynb asks: {topic}"


def test_term_matcher_finds_glossary_terms_as_readers_write_them():
    matcher = bookext.TermMatcher(bookext.glossary_entries(ROOT / "glossary.md"))
    text = (
        "二元交叉熵不同于交叉熵。Binary cross-entropy losses, cross entropy, MAE and BCE; batch normalisation "
        "layers; recall that a key value; weak augmentation; batch-normalized; KL散度, KL 散度; 权重裁剪 and 裁剪."
    )
    found = [(text[a:b], anchor) for a, b, anchor in matcher.finditer(text)]
    assert found == [
        ("二元交叉熵", "term-binary-cross-entropy"),  # the longest form wins
        ("交叉熵", "term-cross-entropy"),
        ("Binary cross-entropy", "term-binary-cross-entropy"),  # any case, plural "losses" not part of it
        ("cross entropy", "term-cross-entropy"),  # a space for the hyphen
        ("MAE", "term-mean-absolute-error"),  # abbreviations in the glossary's parentheses
        ("BCE", "term-binary-cross-entropy"),
        ("batch normalisation", "term-batch-normalization"),  # British spelling
        ("weak augmentation", "term-weak-strong-augmentation"),  # "weak / strong augmentation"
        ("KL散度", "term-kullback-leibler-divergence"),
        ("KL 散度", "term-kullback-leibler-divergence"),  # with a space between Latin and Chinese
        ("权重裁剪", "term-weight-clipping"),  # 裁剪 alone (crop or clip?) is not a link
    ], found
    # "recall", "key", "value" are ordinary English words too; "batch-normalized" is one word.
    # A parenthesis that only gives context is not an abbreviation: "pre-activation (ResNet)" and
    # "cell (HOG)" must not turn ResNet into pre-activation, nor HOG into a cell.
    text = "A pre-activation ResNet; a HOG cell."
    found = [(text[a:b], anchor) for a, b, anchor in matcher.finditer(text)]
    assert found == [("pre-activation", "term-pre-activation"), ("HOG", "term-histogram-of-oriented-gradients")], found


def test_every_glossary_row_has_a_unique_anchor_and_a_form_to_find():
    entries = bookext.glossary_entries(ROOT / "glossary.md")
    anchors = [anchor for anchor, _, _ in entries]
    assert len(anchors) == len(set(anchors)) > 300
    unfindable = [anchor for anchor, zh, en in entries if not zh and not en]
    # Only rows whose every form is an ambiguous everyday word.
    assert set(unfindable) <= {"term-key", "term-value", "term-query", "term-bin", "term-cell", "term-crop", "term-scaling"}, unfindable
