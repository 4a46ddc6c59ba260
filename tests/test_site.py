"""The website: a full build with warnings as errors, then checks of what readers get.

Static checks read the built HTML; browser checks open it in headless Chromium
served from 127.0.0.1 with every request to any other host blocked and recorded,
as a reader offline or behind a firewall would see it.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HAN = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
REMOTE = re.compile(r"^(https?:)?//", re.I)

pytestmark = pytest.mark.site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "--warningiserror", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"site build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return out / "_build" / "html"


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def toc_pages() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found = [toc["root"]]
    for part in toc.get("parts", []):
        found += [c["file"] for c in part.get("chapters", [])]
    return found


# ---------------------------------------------------------------- static checks


def test_every_toc_entry_is_a_page(site):
    for entry in toc_pages():
        assert (site / f"{entry}.html").is_file(), entry


def test_pages_load_nothing_from_other_hosts(site):
    attributes = {"script": "src", "img": "src", "iframe": "src", "source": "src", "audio": "src", "video": "src", "object": "data", "embed": "src"}
    for page in pages(site):
        doc = soup(page)
        for tag, attr in attributes.items():
            for node in doc.find_all(tag):
                assert not REMOTE.match(node.get(attr, "")), f"{page.name}: <{tag} {attr}={node.get(attr)}>"
        for link in doc.find_all("link"):
            rel = set(link.get("rel", []))
            if rel & {"stylesheet", "icon", "preload", "modulepreload", "manifest", "prefetch", "preconnect", "dns-prefetch"}:
                assert not REMOTE.match(link.get("href", "")), f"{page.name}: <link rel={rel} href={link.get('href')}>"
        for script in doc.find_all("script", src=False):
            assert "://" not in (script.string or ""), f"{page.name}: inline script names another host"
    for css in (site / "_static").rglob("*.css"):
        content = css.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import\s+['\"]?(url\()?\s*['\"]?(https?:)?//", content), css.name


def test_math_uses_the_local_mathjax(site):
    page = site / "chapters" / "how-to-use.html"
    srcs = [s.get("src", "") for s in soup(page).find_all("script")]
    assert any(s.startswith("../_static/mathjax/tex-chtml.js") for s in srcs), srcs
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))


def test_web_font_covers_every_chinese_character_on_the_site(site):
    from fontTools.ttLib import TTFont

    font = site / "_static" / "fonts" / "book-cjk.woff2"
    assert font.is_file() and font.stat().st_size < 2 * 2**20
    cmap = TTFont(str(font)).getBestCmap()
    used = set()
    for page in pages(site):
        used.update(HAN.findall(soup(page).get_text()))
    assert "损" in used
    missing = sorted(c for c in used if ord(c) not in cmap)
    assert not missing, f"web font lacks {''.join(missing[:40])}"


def test_search_index_holds_chinese_words_and_english(site):
    import json

    raw = (site / "searchindex.js").read_text(encoding="utf-8")
    terms = json.loads(raw[raw.index("(") + 1 : raw.rindex(")")])["terms"]
    for word in ("损失函数", "交叉熵", "焦点损失", "softmax", "reproduc"):
        assert word in terms, word


def test_chapter_pages_have_colab_and_download(site):
    from nbtool import repository_url

    html = (site / "chapters" / "how-to-use.html").read_text(encoding="utf-8")
    owner_repo = repository_url().split("github.com/")[1]
    assert f"https://colab.research.google.com/github/{owner_repo}/blob/main/chapters/how-to-use.ipynb" in html
    assert "_sources/chapters/how-to-use.ipynb" in html
    assert (site / "_sources" / "chapters" / "how-to-use.ipynb").is_file()


def test_language_blocks_are_balanced_and_hold_no_headings(site):
    for name in ("chapters/how-to-use.html", "intro.html"):
        doc = soup(site / name)
        zh, en = doc.select("div.lang-zh"), doc.select("div.lang-en")
        assert zh and len(zh) == len(en), name
        for block in zh + en:
            assert not block.find(re.compile(r"^h[1-6]$")), f"{name}: heading inside a language block"
            assert block.get_text(strip=True)
        # Each block closed where it opened: the sections (headings) are not inside any block.
        for section in doc.select("section"):
            assert not section.find_parent("div", class_=["lang-zh", "lang-en"]), name


def test_bibliography_lists_cited_works(site):
    text = soup(site / "bibliography.html").get_text()
    assert "Deep Learning" in text and "Goodfellow" in text
    assert "Bridle" in text


# ---------------------------------------------------------------- browser checks


def chromium_path() -> str | None:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        message = "no Chromium found (Debian package `chromium`); `make test` installs it when run as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def visit(browser, server):
    """A fresh browser context (empty storage) that blocks and records other hosts."""
    contexts = []

    def open_context(locale: str = "en-US"):
        context = browser.new_context(locale=locale)
        context.outside, context.failed = [], []

        def route(r):
            if r.request.url.startswith(server):
                r.continue_()
            else:
                context.outside.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        context.on("response", lambda resp: resp.status >= 400 and context.failed.append(f"{resp.status} {resp.url}"))
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


def test_every_page_requests_only_its_own_host(site, server, visit):
    context = visit()
    page = context.new_page()
    for path in pages(site):
        page.goto(f"{server}/{path.relative_to(site).as_posix()}", wait_until="networkidle")
    assert context.outside == [], context.outside
    assert context.failed == [], context.failed


def test_math_renders_with_the_network_blocked(server, visit):
    context = visit()
    page = context.new_page()
    page.goto(f"{server}/chapters/how-to-use.html", wait_until="networkidle")
    page.wait_for_selector("mjx-container", state="attached", timeout=15000)
    assert page.locator("mjx-container").count() >= 4
    assert page.locator("mjx-merror").count() == 0
    assert "$$" not in page.locator("main").inner_text()
    assert context.outside == []


def test_figures_load(server, visit):
    page = visit().new_page()
    page.goto(f"{server}/chapters/how-to-use.html", wait_until="networkidle")
    widths = page.eval_on_selector_all("main img", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and min(widths) > 100


def _visible(page, selector: str) -> bool:
    return page.locator(selector).first.is_visible()


def test_language_switch_works_and_persists(server, visit):
    page = visit(locale="en-US").new_page()
    page.goto(f"{server}/chapters/how-to-use.html", wait_until="networkidle")
    # First visit from an English browser: English only.
    assert _visible(page, "div.lang-en") and not _visible(page, "div.lang-zh")
    page.click(".dlkb-lang-switch button[data-mode=zh]")
    assert _visible(page, "div.lang-zh") and not _visible(page, "div.lang-en")
    assert page.get_attribute(".dlkb-lang-switch button[data-mode=zh]", "aria-pressed") == "true"
    page.reload(wait_until="networkidle")
    assert _visible(page, "div.lang-zh") and not _visible(page, "div.lang-en")
    page.goto(f"{server}/intro.html", wait_until="networkidle")
    assert _visible(page, "div.lang-zh") and not _visible(page, "div.lang-en")
    page.click(".dlkb-lang-switch button[data-mode=both]")
    page.goto(f"{server}/chapters/how-to-use.html", wait_until="networkidle")
    assert _visible(page, "div.lang-zh") and _visible(page, "div.lang-en")


def test_chinese_browser_starts_in_chinese(server, visit):
    page = visit(locale="zh-CN").new_page()
    page.goto(f"{server}/intro.html", wait_until="networkidle")
    assert _visible(page, "div.lang-zh") and not _visible(page, "div.lang-en")


# searchtools.js writes one of these two sentences into p.search-summary when, and only
# when, the search has run; the element exists (empty, or "Preparing search...") before.
SEARCH_DONE = ("Search finished, found", "Your search did not match any documents")


def search_links(page, server: str, query: str) -> tuple[list[str], str]:
    """Run a search on the site's search page; return (result links, summary text) once it has finished."""
    page.goto(f"{server}/search.html?q={quote(query)}", wait_until="networkidle")
    page.wait_for_function(
        "(() => { const s = document.querySelector('#search-results p.search-summary');"
        f" return s !== null && {list(SEARCH_DONE)!r}.some(t => s.textContent.startsWith(t)); }})()",
        timeout=15000,
    )
    links = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.getAttribute('href'))")
    summary = page.inner_text("#search-results p.search-summary")
    return links, summary


@pytest.mark.parametrize(
    ("query", "expected_page"),
    [
        ("损失函数", "glossary"),
        ("交叉熵", "how-to-use"),
        ("焦点损失函数", "glossary"),  # no such indexed word: split into 焦点损失 + 函数
        ("焦点损失的公式", "losses"),  # 焦点损失 + (的: single, dropped) + 公式
        ("softmax", "how-to-use"),
        ("reproducibility", "how-to-use"),
    ],
)
def test_search_finds_chinese_phrases_and_english_words(server, visit, query, expected_page):
    links, summary = search_links(visit().new_page(), server, query)
    assert summary.startswith("Search finished"), (query, summary)
    assert any(expected_page in (href or "") for href in links), (query, links)


def test_search_for_absent_word_finds_nothing(server, visit):
    links, summary = search_links(visit().new_page(), server, "量子纠缠")
    assert summary.startswith("Your search did not match"), summary
    assert links == []


def test_search_tests_fail_on_a_broken_query_splitter(server, visit):
    """The search checks above can fail: with a splitter that returns no terms, a query the
    book answers finds nothing, so the expected page is missing from the results."""
    context = visit()
    broken = "window.dlkbSplitQuery = function () { return []; }; window.splitQuery = window.dlkbSplitQuery;"
    context.route("**/search-zh.js*", lambda r: r.fulfill(status=200, content_type="application/javascript", body=broken))
    links, summary = search_links(context.new_page(), server, "损失函数")
    assert not any("glossary" in (href or "") for href in links), links


def test_interview_bank_page_lists_every_question(site):
    import bookext

    body, _ = bookext.interview_bank_markdown(ROOT)
    expected = body.count('class="dlkb-bank-question"')
    html = (site / "interview-bank.html").read_text(encoding="utf-8")
    assert html.count('class="dlkb-bank-question"') == expected > 50
    assert html.count('<details class="answer">') == 2 * expected  # one answer per language
    assert "chapters/losses.html" in html  # links back to the chapters


def test_random_question_shows_one_question_and_remembers_it(server, visit):
    page = visit().new_page()
    page.goto(f"{server}/interview-bank.html", wait_until="networkidle")
    total = page.locator(".dlkb-bank-question").count()
    assert total > 50 and page.locator(".dlkb-bank-question:visible").count() == total
    page.click(".dlkb-bank-random")
    visible = page.locator(".dlkb-bank-question:visible")
    assert visible.count() == 1
    assert visible.locator("details[open]").count() == 0  # the answer stays collapsed
    first = visible.get_attribute("id")
    page.click(".dlkb-bank-random")
    second = page.locator(".dlkb-bank-question:visible").get_attribute("id")
    assert second != first  # unseen questions first
    seen = page.evaluate("JSON.parse(localStorage.getItem('dlkb-bank-seen'))")
    assert seen == [first, second]
    page.reload(wait_until="networkidle")
    assert "seen 2 / " in page.inner_text(".dlkb-bank-status")
    page.click(".dlkb-bank-random")
    page.click(".dlkb-bank-all")
    assert page.locator(".dlkb-bank-question:visible").count() == total


def test_phone_width_language_switch_fits_on_one_line(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(f"{server}/chapters/losses.html", wait_until="networkidle")
        boxes = page.eval_on_selector_all(
            ".dlkb-lang-switch button", "bs => bs.map(b => { const r = b.getBoundingClientRect(); "
            "return [r.top, r.bottom, r.right, b.scrollHeight, b.clientHeight]; })")
        assert len(boxes) == 3
        tops = {round(b[0]) for b in boxes}
        assert len(tops) == 1, boxes  # the three buttons stand on one line
        assert all(b[3] <= b[4] + 1 for b in boxes), boxes  # no label wraps inside its button
        assert max(b[2] for b in boxes) <= 390, boxes  # nothing overflows the screen
        header = page.eval_on_selector(".article-header-buttons", "e => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right]")
        assert header[0] <= header[1] + 1 and header[2] <= 391, header
    finally:
        context.close()


def test_search_snippets_show_text_not_tex(server, visit):
    page = visit().new_page()
    links, summary = search_links(page, server, "focal")
    assert links, summary
    page.wait_for_function("document.querySelectorAll('#search-results ul.search li p.context').length > 0", timeout=15000)
    snippets = page.eval_on_selector_all("#search-results ul.search li p.context", "ps => ps.map(p => p.textContent)")
    assert snippets and not any("\\(" in s or "\\[" in s or "$$" in s for s in snippets), snippets
    assert page.evaluate("window.dlkbStripMath('a \\\\(\\\\alpha_t\\\\) b \\\\[x^2\\\\] c')") == "a … b … c"


PAGE_BUDGET_BYTES = 1_500_000  # HTML + its images, for readers on a slow connection


@pytest.mark.parametrize("name", [p for p in toc_pages() if p.startswith("chapters/")])
def test_chapter_page_weight_is_within_budget(site, name):
    page = site / f"{name}.html"
    html = page.read_text(encoding="utf-8")
    total = page.stat().st_size
    for src in set(re.findall(r'<img[^>]+src="([^"]+)"', html)):
        if REMOTE.match(src) or src.startswith("data:"):
            continue
        total += (page.parent / src).resolve().stat().st_size
    assert total <= PAGE_BUDGET_BYTES, f"{name}: {total / 1e6:.2f} MB of HTML and images (budget 1.5 MB)"


# ---------------------------------------------------------------- linked glossary terms

NOT_TERM_TEXT = {"code", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "script", "style", "summary"}


def _language_text(block) -> tuple[str, list[str | None]]:
    """The block's prose (no code, math, headings or ordinary links) and, per character, the
    glossary anchor of the term link it sits in. Text nodes are kept apart by a NUL."""
    text, anchors = [], []
    for string in block.find_all(string=True):
        parents = list(string.parents)
        if any(p.name in NOT_TERM_TEXT for p in parents) or any("math" in (p.get("class") or []) for p in parents):
            continue
        link = next((p for p in parents if p.name == "a"), None)
        anchor = None
        if link is not None:
            if "dlkb-term" not in (link.get("class") or []):
                continue
            anchor = link["href"].split("#", 1)[1]
        text.append(str(string) + "\0")
        anchors += [anchor] * (len(string) + 1)
    return "".join(text), anchors


@pytest.mark.parametrize("name", [p for p in toc_pages() if p.startswith("chapters/")])
def test_glossary_terms_are_linked_at_their_first_use(site, name):
    """In each language, the first use of every term is a link to its glossary row, and no later use is.

    Where the terms are is the extension's matcher (unit-tested in test_book.py); whether
    each one is linked, and where to, is read from the built page.
    """
    import bookext

    matcher = bookext.TermMatcher(bookext.glossary_entries(ROOT / "glossary.md"))
    page = soup(site / f"{name}.html")
    for language in ("lang-zh", "lang-en"):
        text, anchors = "", []
        for block in page.select(f"div.{language}"):  # all the prose of one language, in page order
            block_text, block_anchors = _language_text(block)
            text += block_text
            anchors += block_anchors
        seen = set()
        for start, end, anchor in matcher.finditer(text):
            inside = set(anchors[start:end])
            where = f"{name} ({language}): {text[start:end]!r} at ...{text[max(0, start - 30):start]!r}"
            if anchor not in seen:
                assert inside == {anchor}, f"{where} is the first use but not linked to glossary#{anchor}"
                seen.add(anchor)
            else:
                assert inside == {None}, f"{where} is linked again after its first use"
        linked = {a for a in anchors if a is not None}
        assert linked == seen, f"{name} ({language}): links to terms not found in the text: {linked - seen}"
        assert len(seen) >= 5, f"{name} ({language}): only {len(seen)} glossary terms found"


def test_term_links_land_on_glossary_rows_that_list_their_chapters(site):
    glossary = soup(site / "glossary.html")
    rows = {row["id"]: row for row in glossary.select("tr[id^=term-]")}
    assert len(rows) > 300
    targets = set()
    for name in [p for p in toc_pages() if p.startswith("chapters/")]:
        for link in soup(site / f"{name}.html").select("a.dlkb-term"):
            path, anchor = link["href"].split("#", 1)
            assert path == "../glossary.html" and anchor in rows, link
            targets.add((anchor, name.split("/")[-1]))
    for anchor, chapter in targets:  # the row lists every chapter that links to it
        used_in = rows[anchor].select_one("p.dlkb-used-in")
        assert used_in is not None and chapter in [a.get_text() for a in used_in.select("a")], (anchor, chapter)
    cross_entropy = [a.get_text() for a in rows["term-cross-entropy"].select("p.dlkb-used-in a")]
    assert "losses" in cross_entropy and "how-to-use" in cross_entropy


def test_interactive_figure_plays_offline_and_its_slider_changes_the_frame(server, visit):
    context = visit()
    page = context.new_page()
    page.goto(f"{server}/chapters/losses.html", wait_until="networkidle")
    player = page.locator("div.animation").first
    player.scroll_into_view_if_needed()
    image = player.locator("img")
    page.wait_for_function("img => img.src.startsWith('data:image/png')", arg=image.element_handle(), timeout=15000)
    first = image.get_attribute("src")
    slider = player.locator("input.anim-slider")
    last = slider.get_attribute("max")
    slider.evaluate("(s, v) => { s.value = v; s.dispatchEvent(new Event('input')); }", last)
    assert image.get_attribute("src") != first  # another frame is shown
    box = image.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50  # the frame is drawn, not a broken image
    assert player.locator("button").count() == 9
    assert not context.outside, context.outside  # no icon font or script from another host
