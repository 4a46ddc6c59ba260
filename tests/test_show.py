import pytest

import dlkb.utils
from dlkb.show import Source, show_source


def test_show_source_renders_the_package_code():
    src = show_source(dlkb.utils.set_seed)
    assert isinstance(src, Source)
    assert str(src).startswith("def set_seed(seed: int) -> None:")
    assert "torch.manual_seed(seed)" in str(src)
    text = repr(src)
    assert text.startswith("# dlkb.utils.set_seed  (utils.py:")
    html = src._repr_html_()
    assert "dlkb.utils.set_seed" in html and "<span" in html and "manual_seed" in html


def test_show_source_of_a_class_and_module():
    from dlkb.train import History

    assert "class History" in str(show_source(History))
    assert '"""Reproducibility' in str(show_source(dlkb.utils))


def test_show_source_refuses_foreign_or_non_code_objects():
    import json

    with pytest.raises(ValueError, match="show_source: obj must be defined in the dlkb package; got 'dumps' from 'json'"):
        show_source(json.dumps)
    with pytest.raises(TypeError, match="show_source: obj must be a function, class, method or module; got int"):
        show_source(3)


def test_show_source_unwraps_decorated_functions():
    from dlkb.train import evaluate  # decorated with @torch.no_grad()

    src = show_source(evaluate)
    assert "def evaluate(" in str(src) and "eval_mode(model)" in str(src)
    assert repr(src).startswith("# dlkb.train.evaluate  (train.py:")
