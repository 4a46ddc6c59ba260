"""Notebook tool of the book: re-execute, time, create.

    python tools/nbtool.py run chapters/how-to-use.ipynb [more.ipynb ...]
    python tools/nbtool.py run --all
    python tools/nbtool.py timing [--out _build/timing.md]
    python tools/nbtool.py new SLUG "中文标题" "English title"
    python tools/nbtool.py setup-cell

`run` is the only way outputs get into a notebook: it first rewrites cell 0 into
the canonical setup cell (rendered from the repository URL in _config.yml), then
executes top to bottom in a fresh kernel of this environment, seeded through the
notebook's own set_seed call and PYTHONHASHSEED=0, and saves the outputs (nbval
re-executes with another hash seed, so no output may depend on it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
BUDGET_SECONDS = 60.0

# The environment of every kernel that executes a notebook, here and under nbval
# (tests/conftest.py applies the same), so saved outputs and re-executed ones agree:
# - figures are captured as outputs whatever the caller's MPLBACKEND says;
# - one intra-op thread: floating-point results do not depend on the core count, and
#   two notebooks validated in parallel on two cores do not oversubscribe them (with
#   OpenMP spin-waiting, that made small torch steps up to ~70x slower here);
# - a hash seed for set/dict iteration order of strings. `make run` saves outputs with
#   RUN_HASHSEED and nbval re-executes with VALIDATE_HASHSEED (tests/conftest.py): no
#   output may depend on it, and a notebook whose output does fails CI every time
#   instead of passing by luck on a reader's machine (kernels get a random seed there).
RUN_HASHSEED = "0"
VALIDATE_HASHSEED = "4242"
KERNEL_ENV = {
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": RUN_HASHSEED,
}

# One meaning per tag; tests/test_book.py rejects anything else, and _ext/bookext.py
# (which must list the same tags) warns at build time.
ALLOWED_TAGS = frozenset(
    {
        "lang-zh",  # Chinese prose; pairs with the next lang-en cell
        "lang-en",  # English prose
        "remove-cell",  # the setup cell: runs in Jupyter/Colab, hidden on the website
        "remove-input",  # show only the output (e.g. a generated table)
        "remove-output",  # show only the code (e.g. a long log)
        "hide-input",  # plotting code: collapsed on the website
        "hide-output",
        "hide-cell",
        "raises-exception",  # a cell that demonstrates an error on purpose
    }
)

SETUP_TEMPLATE = '''\
# 环境准备 Setup: in Colab / AI Studio this installs dlkb (with a CJK font for figures)
# from the book's repository and keeps the preinstalled torch; elsewhere it does nothing.
import importlib, importlib.util, subprocess, sys
if importlib.util.find_spec("dlkb") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{url}"], check=True)
    importlib.invalidate_caches()'''


def repository_url() -> str:
    """The repository URL, defined once in _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def setup_cell_source() -> str:
    """The exact source every notebook's first cell must have."""
    return SETUP_TEMPLATE.format(url=repository_url())


def all_notebooks() -> list[Path]:
    return sorted(p for p in CHAPTERS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def is_setup_cell(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and cell.source.startswith("# 环境准备 Setup")


def normalize_setup_cell(nb: nbformat.NotebookNode) -> None:
    """Make the first code cell the canonical setup cell (inserting it if missing)."""
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    if first_code < len(nb.cells) and is_setup_cell(nb.cells[first_code]):
        nb.cells[first_code].source = setup_cell_source()
        nb.cells[first_code].metadata["tags"] = ["remove-cell"]
    else:
        cell = nbformat.v4.new_code_cell(setup_cell_source(), metadata={"tags": ["remove-cell"]})
        nb.cells.insert(first_code, cell)


def clean_metadata(nb: nbformat.NotebookNode) -> None:
    """Drop volatile metadata (execution timestamps, widget state) so diffs stay readable."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if "id" in cell and cell.get("id") is None:
            del cell["id"]
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}


class PeakMemory:
    """Peak resident memory of a process and its children, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int) -> None:
        self._pid = pid
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                proc = psutil.Process(self._pid)
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True)
                )
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.peak


def execute(path: Path, *, save: bool) -> tuple[float, int]:
    """Execute one notebook in a fresh kernel; return (wall seconds, peak kernel memory in bytes)."""
    nb = nbformat.read(path, as_version=4)
    normalize_setup_cell(nb)
    os.environ.update(KERNEL_ENV)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    memory = PeakMemory()
    start = time.perf_counter()
    with client.setup_kernel():
        pid = getattr(client.km, "provisioner", None)
        pid = getattr(pid, "pid", None) or getattr(getattr(pid, "process", None), "pid", None)
        if pid:
            memory.watch(pid)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    seconds = time.perf_counter() - start
    peak = memory.stop()
    if save:
        clean_metadata(nb)
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return seconds, peak


def cmd_run(args: argparse.Namespace) -> int:
    paths = all_notebooks() if args.all else [Path(p).resolve() for p in args.notebooks]
    if not paths:
        print("nbtool run: name notebooks or pass --all", file=sys.stderr)
        return 2
    for path in paths:
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"nbtool run: not a notebook file: {path}", file=sys.stderr)
            return 2
        seconds, peak = execute(path, save=True)
        flag = "" if seconds <= BUDGET_SECONDS else f"  OVER the {BUDGET_SECONDS:.0f} s budget"
        print(f"{path.relative_to(ROOT)}: executed and saved in {seconds:.1f} s, peak {peak / 2**20:.0f} MiB{flag}")
    return 0


def cmd_timing(args: argparse.Namespace) -> int:
    rows = []
    for path in all_notebooks():
        seconds, peak = execute(path, save=False)
        rows.append((path.relative_to(ROOT).as_posix(), seconds, peak))
        print(f"{rows[-1][0]}: {seconds:.1f} s, {peak / 2**20:.0f} MiB", flush=True)
    lines = [
        f"# Notebook timing ({os.cpu_count()} CPUs, budget {BUDGET_SECONDS:.0f} s each)",
        "",
        "| notebook | wall seconds | peak memory (MiB) | within budget |",
        "| --- | ---: | ---: | :---: |",
    ]
    lines += [f"| {n} | {s:.1f} | {p / 2**20:.0f} | {'yes' if s <= BUDGET_SECONDS else 'NO'} |" for n, s, p in rows]
    lines += ["", f"Total: {sum(s for _, s, _ in rows):.1f} s over {len(rows)} notebooks."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0 if all(s <= BUDGET_SECONDS for _, s, _ in rows) else 1


def cmd_new(args: argparse.Namespace) -> int:
    path = CHAPTERS / f"{args.slug}.ipynb"
    if path.exists():
        print(f"nbtool new: {path} exists", file=sys.stderr)
        return 2
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md(f"# {args.zh} {args.en}"),
        nbformat.v4.new_code_cell("import dlkb.plot\nimport dlkb.utils\n\ndlkb.utils.set_seed(0)\n_ = dlkb.plot.use_book_style()"),
        md("（中文正文）", metadata={"tags": ["lang-zh"]}),
        md("(English text with the same content.)", metadata={"tags": ["lang-en"]}),
        md("## 面试题 Interview questions"),
    ]
    normalize_setup_cell(nb)
    clean_metadata(nb)
    nbformat.write(nb, path)
    print(f"created {path.relative_to(ROOT)}; add `- file: chapters/{args.slug}` to _toc.yml, write it, then `make run NB={path.relative_to(ROOT)}`")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="re-execute notebooks and save their outputs")
    p_run.add_argument("notebooks", nargs="*")
    p_run.add_argument("--all", action="store_true")
    p_run.set_defaults(func=cmd_run)
    p_time = sub.add_parser("timing", help="execute every notebook, write a table of seconds and memory")
    p_time.add_argument("--out", default=str(ROOT / "_build" / "timing.md"))
    p_time.set_defaults(func=cmd_timing)
    p_new = sub.add_parser("new", help="create a chapter notebook skeleton")
    p_new.add_argument("slug")
    p_new.add_argument("zh")
    p_new.add_argument("en")
    p_new.set_defaults(func=cmd_new)
    p_setup = sub.add_parser("setup-cell", help="print the canonical setup cell")
    p_setup.set_defaults(func=lambda a: print(setup_cell_source()) or 0)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
