"""dlkb: the shared code of the bilingual deep-learning fundamentals book.

Every chapter notebook imports this package instead of pasting code, so that the
implementation shown in the book is the one the tests check. Sub-modules are
imported on demand (``import dlkb.utils``), which keeps ``import dlkb`` cheap.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
