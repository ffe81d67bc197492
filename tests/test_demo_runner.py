"""`mpibatch demo` checks what it needs before any rank starts: Keras, the backend KERAS_BACKEND names, Pillow."""
import importlib.util

import pytest

from conftest import require
from mpibatch.demo.runner import missing_requirements


def test_a_backend_that_is_not_installed_is_named_with_how_to_get_it(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "no_such_backend_module")
    problem = missing_requirements()
    assert problem is not None
    assert "the demo needs no_such_backend_module" in problem
    assert "KERAS_BACKEND=no_such_backend_module" in problem and "unset KERAS_BACKEND" in problem


@pytest.mark.parametrize("value", [None, ""])
def test_tensorflow_is_the_default_backend(monkeypatch, value):
    require(importlib.util.find_spec("tensorflow") is not None, "TensorFlow (the tensorflow extra)")
    if value is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", value)
    assert missing_requirements() is None
