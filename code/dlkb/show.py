"""Show a ``dlkb`` object's source in a notebook, highlighted.

Chapters display the implementation they are about to check with
``show_source(dlkb.losses.focal_loss)`` instead of pasting a second copy, so the
book can never drift from the tested code.
"""

from __future__ import annotations

import inspect
from html import escape
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

__all__ = ["Source", "show_source"]


class Source:
    """Source code of a Python object; renders as highlighted HTML in notebooks.

    ``str()`` and the plain-text representation are the code itself, so it also
    reads well in a terminal and is what notebook validation compares.
    """

    def __init__(self, obj: object) -> None:
        # Decorators such as @torch.no_grad() wrap the function; show the function itself.
        obj = inspect.unwrap(obj) if callable(obj) and not inspect.isclass(obj) else obj
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) or inspect.ismodule(obj)):
            raise TypeError(
                f"show_source: obj must be a function, class, method or module; got {type(obj).__name__}"
            )
        module = inspect.getmodule(obj)
        if module is None or not module.__name__.split(".")[0] == "dlkb":
            raise ValueError(
                f"show_source: obj must be defined in the dlkb package; got {getattr(obj, '__qualname__', obj)!r} "
                f"from {getattr(module, '__name__', None)!r}"
            )
        self.code = inspect.getsource(obj).rstrip() + "\n"
        self.qualname = module.__name__ if inspect.ismodule(obj) else f"{module.__name__}.{obj.__qualname__}"
        lines, first = inspect.getsourcelines(obj)
        first = max(first, 1)
        self.location = f"{Path(inspect.getsourcefile(obj)).name}:{first}-{first + len(lines) - 1}"

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"# {self.qualname}  ({self.location})\n{self.code}"

    def _repr_html_(self) -> str:
        # Inline styles: the colours survive Jupyter, Colab and the website alike.
        body = highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True, style="friendly", nowrap=False))
        caption = f"<code>{escape(self.qualname)}</code> <small>({escape(self.location)})</small>"
        # Long listings scroll inside their own box instead of running off the page.
        return (
            '<div class="dlkb-source" style="border-left:3px solid #0072B2;padding-left:6px">'
            f'<div style="font-size:90%;margin-bottom:2px">{caption}</div>'
            f'<div style="max-height:32em;overflow:auto">{body}</div></div>'
        )


def show_source(obj: object) -> Source:
    """Return a displayable :class:`Source` of ``obj`` (a ``dlkb`` function, class, method or module)."""
    return Source(obj)
