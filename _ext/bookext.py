"""Local Sphinx extension of the book.

1. Bilingual cells: myst-nb drops the tags of markdown cells, so on ``source-read``
   (before myst-nb parses a notebook) every markdown cell tagged ``lang-zh`` or
   ``lang-en`` is wrapped in ``<div class="lang-zh" lang="zh-Hans">`` … ``</div>``
   with blank lines inside, so its Markdown still renders. ``_assets/lang.js``
   shows one language or both. A cell tag outside the allowed list, or a heading
   inside a language cell, is reported as a warning (an error with ``-W``).
2. Chinese search: the Chinese terms of ``glossary.md`` become a jieba user
   dictionary, so whole phrases such as 损失函数 are indexed as words.
3. Offline math: the build fails early if ``mathjax_path`` is a local file that is
   missing (run ``make book``, which copies MathJax from the npm registry package).
4. Linked terms: every chapter links the first use of each glossary term, once in its
   Chinese text and once in its English text, to the term's row of ``glossary.md``, and
   each glossary row lists the chapters that use the term. This happens at build time,
   so the notebooks hold no ``{term}`` roles (Jupyter and Colab would show them raw).
5. Offline Chinese text: after the HTML build, the CJK font that figures use
   (Noto Sans SC, SIL Open Font License) is cut down to the characters the book
   uses and written as ``_static/fonts/book-cjk.woff2``; ``book.css`` serves it for CJK
   code points only, after trying the usual installed CJK fonts by name, so a browser
   downloads it only when the reader's machine has none. No font CDN is involved.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging as sphinx_logging

LOGGER = sphinx_logging.getLogger(__name__)


def _load_allowed_tags() -> frozenset[str]:
    """The one list of cell tags lives in tools/nbtool.py; load it from there by path."""
    path = Path(__file__).resolve().parents[1] / "tools" / "nbtool.py"
    spec = importlib.util.spec_from_file_location("_dlkb_nbtool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ALLOWED_TAGS


ALLOWED_TAGS = _load_allowed_tags()
LANG_ATTR = {"lang-zh": "zh-Hans", "lang-en": "en"}
HEADING = re.compile(r"^#{1,6} ", re.M)
CJK = re.compile(r"[\u3400-\u9fff]")


def glossary_terms(path: Path) -> list[str]:
    """Chinese terms of the first column of every table row in ``glossary.md``."""
    terms: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 2:
            continue
        for term in re.split(r"[/、,，]", cells[0]):
            term = re.sub(r"[`*（(].*$", "", term).strip()
            if CJK.search(term) and " " not in term and term not in terms:
                terms.append(term)
    return terms


def wrap_language_cells(source: str, docname: str) -> str:
    """Return the notebook JSON ``source`` with tagged markdown cells wrapped in language divs."""
    notebook = json.loads(source)
    for index, cell in enumerate(notebook.get("cells", [])):
        tags = cell.get("metadata", {}).get("tags", [])
        unknown = sorted(set(tags) - ALLOWED_TAGS)
        if unknown:
            LOGGER.warning("%s: cell %d has unknown tag(s) %s; allowed: %s", docname, index, unknown, sorted(ALLOWED_TAGS))
        langs = [t for t in tags if t in LANG_ATTR]
        if cell.get("cell_type") != "markdown" or not langs:
            continue
        if len(langs) > 1:
            LOGGER.warning("%s: cell %d is tagged with both languages", docname, index)
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if HEADING.search(text):
            LOGGER.warning("%s: cell %d has a heading inside a %s cell; headings go outside", docname, index, langs[0])
        cell["source"] = f'<div class="{langs[0]}" lang="{LANG_ATTR[langs[0]]}">\n\n{text.strip()}\n\n</div>\n'
    return json.dumps(notebook, ensure_ascii=False)


# ---------------------------------------------------------------- interview question bank

BANK_DOC = "interview-bank"
BANK_MARKER = "<!-- interview-bank: generated at build time by _ext/bookext.py -->"
INTERVIEW_HEADING = re.compile(r"^##\s+面试题\s+Interview questions\s*$", re.M)
QUESTION_START = {"lang-zh": re.compile(r"(?=\*\*问题 ?\d+[.．]\*\*)"), "lang-en": re.compile(r"(?=\*\*Question \d+\.\*\*)")}


def _cell_text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def toc_chapters(root: Path) -> list[str]:
    """Notebook docnames in the order of ``_toc.yml``."""
    import yaml  # noqa: PLC0415 - a Jupyter Book dependency

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = [entry["file"] for part in toc.get("parts", []) for entry in part.get("chapters", []) if "file" in entry]
    return [f for f in files if (root / f"{f}.ipynb").is_file()]


def interview_questions(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """The chapter title and its interview questions as (zh, en) markdown pairs.

    Questions live after the ``## 面试题 Interview questions`` heading, in lang-zh and
    lang-en cells, each starting with ``**问题 N.**`` / ``**Question N.**``.
    """
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    title = next(_cell_text(c).lstrip("# ").splitlines()[0] for c in cells if _cell_text(c).startswith("# "))
    found = {"lang-zh": [], "lang-en": []}
    inside = False
    for cell in cells:
        text = _cell_text(cell)
        if cell["cell_type"] != "markdown":
            continue
        if text.lstrip().startswith("#"):
            inside = bool(INTERVIEW_HEADING.search(text))
            continue
        lang = next((t for t in cell.get("metadata", {}).get("tags", []) if t in QUESTION_START), None)
        if inside and lang:
            found[lang] += [q.strip() for q in QUESTION_START[lang].split(text) if q.strip()]
    if len(found["lang-zh"]) != len(found["lang-en"]):
        raise ExtensionError(
            f"bookext: {path.name} has {len(found['lang-zh'])} Chinese but {len(found['lang-en'])} English interview questions"
        )
    return title, list(zip(found["lang-zh"], found["lang-en"]))


def interview_bank_markdown(root: Path) -> tuple[str, list[Path]]:
    """The generated body of the question bank, and the notebooks it was read from."""
    chapters = []
    for doc in toc_chapters(root):
        title, questions = interview_questions(root / f"{doc}.ipynb")
        if questions:
            chapters.append((doc, title, questions))
    total = sum(len(q) for _, _, q in chapters)
    lines = [
        f'<div class="dlkb-bank" data-total="{total}">',
        "",
        '<div class="lang-zh" lang="zh-Hans">',
        "",
        f"共 {total} 道题，来自 {len(chapters)} 章：" + "，".join(f"{t.split(' ')[0]} {len(q)} 道" for _, t, q in chapters) + "。",
        "",
        "</div>",
        "",
        '<div class="lang-en" lang="en">',
        "",
        f"{total} questions from {len(chapters)} chapters.",
        "",
        "</div>",
        "",
        "</div>",
        "",
    ]
    for doc, title, questions in chapters:
        slug = doc.split("/")[-1]
        lines += [f"## {title}", "", f"{{doc}}`→ {title} <{doc}>` · {len(questions)} 题 questions", ""]
        for n, (zh, en) in enumerate(questions, start=1):
            lines += [
                f'<div class="dlkb-bank-question" id="q-{slug}-{n}" data-chapter="{slug}">',
                "",
                '<div class="lang-zh" lang="zh-Hans">',
                "",
                zh,
                "",
                "</div>",
                "",
                '<div class="lang-en" lang="en">',
                "",
                en,
                "",
                "</div>",
                "",
                "</div>",
                "",
            ]
    return "\n".join(lines), [root / f"{doc}.ipynb" for doc in toc_chapters(root)]


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if str(app.env.doc2path(docname)).endswith(".ipynb"):
        source[0] = wrap_language_cells(source[0], docname)
    elif docname == BANK_DOC:
        if BANK_MARKER not in source[0]:
            raise ExtensionError(f"bookext: {BANK_DOC}.md must contain the line {BANK_MARKER}")
        body, read = interview_bank_markdown(Path(app.srcdir))
        for path in read:  # rebuild the bank when a chapter changes
            app.env.note_dependency(str(path))
        source[0] = source[0].replace(BANK_MARKER, body)


def on_config_inited(app: Sphinx, config) -> None:
    glossary = Path(app.srcdir) / "glossary.md"
    if glossary.is_file():
        logging.getLogger("jieba").setLevel(logging.WARNING)
        terms = glossary_terms(glossary)
        # Inside the build's doctree folder (not the system temp dir): one file, rewritten
        # by each build and removed with the build.
        path = Path(app.doctreedir) / "dlkb-jieba-dict.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{t}\n" for t in terms), encoding="utf-8")
        config.html_search_options = {**(config.html_search_options or {}), "dict": str(path)}


def on_builder_inited(app: Sphinx) -> None:
    path = app.config.mathjax_path
    if app.builder.format != "html" or not path or "://" in path or path.startswith("//"):
        return
    static_dirs = [Path(app.confdir) / d for d in app.config.html_static_path]
    if not any((d / path).is_file() for d in static_dirs):
        raise ExtensionError(
            f"bookext: mathjax_path {path!r} is not in html_static_path {app.config.html_static_path}; "
            "run `make book` (it copies MathJax from the npm package into _assets/mathjax)"
        )


def _loads_from_elsewhere(script) -> bool:
    """sphinx-thebe registers a script naming a CDN (used only by thebe, which the book does not enable)."""
    filename = str(getattr(script, "filename", "") or "")
    body = str(getattr(script, "attributes", {}).get("body", ""))
    return "thebe" in filename or "://" in body or "://" in filename


def on_html_page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Keep every page self-contained: drop scripts that point at other hosts."""
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _loads_from_elsewhere(s)]


# Characters the web font must cover: CJK punctuation, ideographs, full-width forms.
WEB_FONT_CHARS = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
WEB_FONT_PATH = Path("_static") / "fonts" / "book-cjk.woff2"


def book_characters(app: Sphinx) -> str:
    """Every CJK character in the book's sources and configuration, sorted."""
    chars = set(WEB_FONT_CHARS.findall(str(app.config.html_title)))
    for docname in app.env.found_docs:
        chars.update(WEB_FONT_CHARS.findall(Path(app.env.doc2path(docname)).read_text(encoding="utf-8")))
    for extra in ("_toc.yml", "_config.yml", "_assets/lang.js"):  # part captions, title, switch labels
        path = Path(app.confdir) / extra
        if path.is_file():
            chars.update(WEB_FONT_CHARS.findall(path.read_text(encoding="utf-8")))
    return "".join(sorted(chars))


def write_web_font(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from fontTools import subset  # noqa: PLC0415 - a matplotlib dependency

    from dlkb.plot import cjk_font_path  # noqa: PLC0415 - the same font as the figures

    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["*"]
    options.name_IDs = ["*"]  # keep the copyright and licence records of the OFL font
    font = subset.load_font(str(cjk_font_path()), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=book_characters(app))
    subsetter.subset(font)
    target = Path(app.outdir) / WEB_FONT_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    subset.save_font(font, str(target), options)


# ---------------------------------------------------------------- linked glossary terms

GLOSSARY_DOC = "glossary"
TERM_CLASS = "dlkb-term"
# English words that are glossary terms in one sense but common words in another ("recall
# that ...", a Jupyter kernel, a dictionary's key and value, float precision): their English
# form is not linked. Their Chinese forms are specific and are linked.
AMBIGUOUS_EN = frozenset(
    "key value query bin jump offset gain scaling translation thread cache padding mask kernel "
    "collapse predictor critic cell negative recall precision generator".split()
)
# Likewise two-character Chinese forms with an everyday second sense: 裁剪 is both "crop" and
# "clip" (权重裁剪), 缩放 any rescaling, 展开 any expansion, 开关 and 格子 plain words.
AMBIGUOUS_ZH = frozenset("裁剪 缩放 展开 开关 格子".split())
# Where a term is not linked: titles, code, math, existing links and raw HTML.
_NO_LINK = (nodes.title, nodes.literal, nodes.literal_block, nodes.math, nodes.math_block, nodes.reference, nodes.raw, nodes.FixedTextElement)


def _plain(text: str) -> str:
    return re.sub(r"[`*]", "", text).strip()


def term_id(english: str) -> str:
    """Anchor of a glossary row, from its English cell: ``"binary cross-entropy (BCE)"`` -> ``"term-binary-cross-entropy"``."""
    main = re.sub(r"\([^)]*\)", " ", _plain(english))
    slug = re.sub(r"[^a-z0-9]+", "-", main.lower()).strip("-")
    return f"term-{slug}"


def _english_forms(english: str) -> list[str]:
    english = _plain(english).replace("\u2013", "-")
    tail = re.search(r"\(([^()]*)\)\s*$", english)
    forms = []
    main = re.sub(r"\s+", " ", re.sub(r"\([^)]*\)", " ", english)).strip()
    parts = [p.strip() for p in main.split("/")]
    head, last = parts[0].split(" "), parts[-1].split(" ")
    for i, part in enumerate(parts):
        words = part.split(" ")
        if i < len(parts) - 1 and len(words) == 1 and len(last) > 1:
            part = " ".join(words + last[1:])  # "weak / strong augmentation": "weak augmentation"
        elif i > 0 and words[0] in head[1:]:
            part = " ".join(head[: head.index(words[0])] + words)  # "clipping by norm / by value"
        forms.append(part)
    if tail:  # a trailing "(BCE)" or "(MAE, L1 loss)": abbreviations and alternative names
        initials = "".join(w[0] for w in re.split(r"[\s-]+", main.lower()) if w)
        forms += [t.strip() for t in tail.group(1).split(",") if " " in t.strip() or _abbreviates(t.strip(), initials)]
    return [f for f in forms if " " in f or f.lower() not in AMBIGUOUS_EN and len(f) > 1]


def _abbreviates(short: str, initials: str) -> bool:
    """Whether the capitals of ``short`` are initials of the term, in order: MAE, IoU, ReLU, HOG yes;
    the context notes "(ResNet)" after "pre-activation" or "(HOG)" after "cell" no."""
    capitals = [c.lower() for c in short if c.isupper()]
    if not capitals:
        return False
    rest = iter(initials)
    return all(c in rest for c in capitals)


def glossary_entries(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """``(anchor, Chinese forms, English forms)`` for every row of the glossary's tables."""
    entries, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 2 or set(cells[0]) <= set("-: ") or cells[0] == "中文":
            continue
        anchor = term_id(cells[1])
        if anchor in seen:  # two rows for one English term (e.g. AP): the first is the target
            continue
        seen.add(anchor)
        zh = [re.sub(r"[（(].*$", "", f).strip() for f in re.split(r"[/、]", _plain(cells[0]))]
        zh = [f for f in zh if len(f) >= 2 and f not in AMBIGUOUS_ZH]
        # "KL散度" is also written "KL 散度": a space where Latin letters or digits meet Chinese.
        zh += [s for f in zh if (s := re.sub(r"(?<=[A-Za-z0-9])(?=[\u3400-\u9fff])|(?<=[\u3400-\u9fff])(?=[A-Za-z0-9])", " ", f)) != f]
        entries.append((anchor, zh, _english_forms(cells[1])))
    return entries


_WORD = re.compile(r"[A-Za-z0-9]+")


def _norm_word(word: str, exact: bool) -> str:
    """One spelling per word: lower case, -ise/-isation as -ize/-ization, no plural s."""
    if exact:
        return word
    word = re.sub(r"is(e|ed|es|ing|ation|ations)$", r"iz\1", word.lower())
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


class TermMatcher:
    """Finds glossary terms in text, the longest form first.

    Chinese forms match as substrings; English forms match whole words, case-insensitively
    (abbreviations with two capitals or a digit exactly), in the singular or plural, with
    British or American -ise/-ize spelling and a space or hyphen between words.
    """

    def __init__(self, entries: list[tuple[str, list[str], list[str]]]):
        self.chinese: dict[str, str] = {}
        self.english: dict[tuple[str, ...], str] = {}
        ordered = [(a, f) for a, zh, en in entries for f in zh + en[:1]] + [(a, f) for a, _, en in entries for f in en[1:]]
        for anchor, form in ordered:  # main names win over abbreviations of other rows
            if CJK.search(form):
                self.chinese.setdefault(form, anchor)
            else:
                exact = sum(c.isupper() for c in form) >= 2 or any(c.isdigit() for c in form)
                words = _WORD.findall(form)
                if words:
                    self.english.setdefault(tuple(_norm_word(w, exact) for w in words) + (exact,), anchor)
        self.lengths = sorted({len(f) for f in self.chinese}, reverse=True)
        self.max_words = max((len(k) - 1 for k in self.english), default=0)

    def _chinese_spans(self, text: str):
        for start in range(len(text)):
            for length in self.lengths:
                anchor = self.chinese.get(text[start : start + length])
                if anchor is not None:
                    yield start, start + length, anchor
                    break

    def _english_spans(self, text: str):
        words = list(_WORD.finditer(text))
        for i, first in enumerate(words):
            if first.start() > 0 and text[first.start() - 1] in "-_":
                continue
            for count in range(min(self.max_words, len(words) - i), 0, -1):
                run = words[i : i + count]
                if any(text[a.end() : b.start()] not in (" ", "-", "\u2013") for a, b in zip(run, run[1:])):
                    continue
                end = run[-1].end()
                if end < len(text) and text[end] in "-_":
                    continue
                raw = [w.group() for w in run]
                anchor = self.english.get(tuple(raw) + (True,)) or self.english.get(tuple(_norm_word(w, False) for w in raw) + (False,))
                if anchor is not None:
                    yield first.start(), end, anchor
                    break

    def finditer(self, text: str):
        """``(start, end, anchor)`` of every term in ``text``, left to right, never overlapping."""
        spans = sorted([*self._chinese_spans(text), *self._english_spans(text)], key=lambda s: (s[0], s[0] - s[1]))
        position = 0
        for start, end, anchor in spans:
            if start >= position:
                yield start, end, anchor
                position = end


def _matcher(app: Sphinx) -> TermMatcher:
    if getattr(app, "_dlkb_term_matcher", None) is None:
        path = Path(app.srcdir) / f"{GLOSSARY_DOC}.md"
        app._dlkb_term_matcher = TermMatcher(glossary_entries(path) if path.is_file() else [])
    return app._dlkb_term_matcher


def _linkable_texts(doctree):
    """``(language, Text node)`` in document order; language from the wrapping lang-zh/lang-en divs."""
    language = None
    for node in doctree.findall():
        if isinstance(node, nodes.raw):
            html = node.astext()
            if 'class="lang-zh"' in html:
                language = "zh"
            elif 'class="lang-en"' in html:
                language = "en"
            elif "</div>" in html:
                language = None
            continue
        if not isinstance(node, nodes.Text) or language is None:
            continue
        parent, skip = node.parent, False
        while parent is not None:
            if isinstance(parent, _NO_LINK) or "cell" in parent.get("classes", []):
                skip = True
                break
            parent = parent.parent
        if not skip:
            yield language, node


def _is_chapter(docname: str) -> bool:
    return docname.startswith("chapters/")


def on_doctree_read(app: Sphinx, doctree) -> None:
    """Record which glossary terms a chapter uses (for the glossary's "used in" lists)."""
    docname = app.env.docname
    if not _is_chapter(docname):
        return
    matcher = _matcher(app)
    used = {anchor for _, node in _linkable_texts(doctree) for _, _, anchor in matcher.finditer(str(node))}
    if not hasattr(app.env, "dlkb_term_usage"):
        app.env.dlkb_term_usage = {}
    app.env.dlkb_term_usage[docname] = used


def on_env_purge_doc(app: Sphinx, env, docname: str) -> None:
    getattr(env, "dlkb_term_usage", {}).pop(docname, None)


def on_env_merge_info(app: Sphinx, env, docnames, other) -> None:
    if not hasattr(env, "dlkb_term_usage"):
        env.dlkb_term_usage = {}
    env.dlkb_term_usage.update(getattr(other, "dlkb_term_usage", {}))


def on_env_get_outdated(app: Sphinx, env, added, changed, removed) -> list[str]:
    """A changed glossary changes the links of every chapter: re-read them all."""
    if GLOSSARY_DOC in added | changed:
        return sorted(doc for doc in env.found_docs if _is_chapter(doc))
    return []


def on_env_get_updated(app: Sphinx, env) -> list[str]:
    """The glossary's "used in" lists depend on every chapter: always rebuild it."""
    return [GLOSSARY_DOC] if GLOSSARY_DOC in env.found_docs else []


def link_first_uses(app: Sphinx, doctree, docname: str) -> None:
    """Link the first use of each term in the Chinese text and in the English text."""
    matcher = _matcher(app)
    glossary_uri = app.builder.get_relative_uri(docname, GLOSSARY_DOC)
    linked: set[tuple[str, str]] = set()
    for language, node in list(_linkable_texts(doctree)):
        text = str(node)
        pieces, position = [], 0
        for start, end, anchor in matcher.finditer(text):
            if (language, anchor) in linked:
                continue
            linked.add((language, anchor))
            pieces.append(nodes.Text(text[position:start]))
            pieces.append(
                nodes.reference(text[start:end], text[start:end], refuri=f"{glossary_uri}#{anchor}", classes=[TERM_CLASS], internal=True)
            )
            position = end
        if pieces:
            pieces.append(nodes.Text(text[position:]))
            node.parent.replace(node, [p for p in pieces if not (isinstance(p, nodes.Text) and not str(p))])


def list_uses_in_glossary(app: Sphinx, doctree, docname: str) -> None:
    """Give every glossary row its anchor and a list of the chapters that use the term."""
    usage = getattr(app.env, "dlkb_term_usage", {})
    order = {doc: i for i, doc in enumerate(toc_chapters(Path(app.srcdir)))}
    for row in doctree.findall(nodes.row):
        entries = [c for c in row.children if isinstance(c, nodes.entry)]
        if len(entries) < 3 or isinstance(row.parent, nodes.thead):
            continue
        anchor = term_id(entries[1].astext())
        row["ids"].append(anchor)
        chapters = sorted((doc for doc, used in usage.items() if anchor in used), key=lambda d: order.get(d, len(order)))
        if not chapters:
            continue
        paragraph = nodes.paragraph(classes=["dlkb-used-in"])
        paragraph += nodes.Text("→ ")
        for i, doc in enumerate(chapters):
            if i:
                paragraph += nodes.Text(" · ")
            uri = app.builder.get_relative_uri(docname, doc)
            paragraph += nodes.reference(doc.split("/")[-1], doc.split("/")[-1], refuri=uri, internal=True)
        entries[2] += paragraph


def on_doctree_resolved(app: Sphinx, doctree, docname: str) -> None:
    if app.builder.format != "html":
        return
    if _is_chapter(docname):
        link_first_uses(app, doctree, docname)
    elif docname == GLOSSARY_DOC:
        list_uses_in_glossary(app, doctree, docname)


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", on_doctree_read)
    app.connect("env-purge-doc", on_env_purge_doc)
    app.connect("env-merge-info", on_env_merge_info)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("env-get-updated", on_env_get_updated)
    app.connect("doctree-resolved", on_doctree_resolved)
    app.connect("build-finished", write_web_font)
    app.connect("config-inited", on_config_inited)
    app.connect("html-page-context", on_html_page_context)
    app.connect("builder-inited", on_builder_inited)
    app.connect("source-read", on_source_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
