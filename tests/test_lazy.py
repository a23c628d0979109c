"""Packages that import their public names on first use (pirf._lazy)."""

from __future__ import annotations

import sys
import types

import pytest

from pirf._lazy import lazy_exports


@pytest.fixture
def package(monkeypatch):
    """A package ``lazydemo`` with a submodule ``lazydemo.tool`` exporting ``tool``."""
    root = types.ModuleType("lazydemo")
    root.__path__ = []
    tool = types.ModuleType("lazydemo.tool")
    exec("def tool():\n    return 'tool'\nHELPER = 3\n", tool.__dict__)
    monkeypatch.setitem(sys.modules, "lazydemo", root)
    monkeypatch.setitem(sys.modules, "lazydemo.tool", tool)
    root.__all__ = lazy_exports("lazydemo", {"tool": ["tool", "HELPER"]})
    return root, tool


def test_names_resolve_on_first_access_and_are_listed(package):
    root, tool = package
    assert root.__all__ == ["HELPER", "tool"]
    assert "tool" not in vars(root)
    assert root.tool is tool.tool and root.HELPER == 3
    assert {"tool", "HELPER"} <= set(dir(root))
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        _ = root.missing


def test_a_submodule_named_like_its_function_does_not_hide_it(package):
    root, tool = package
    root.tool = tool  # what the import system does once the submodule is loaded
    assert root.tool is tool.tool


def test_the_real_packages_keep_their_functions_over_same_named_submodules():
    import pirf.data.check
    import pirf.data.generate
    import pirf.sampling.generate

    assert callable(pirf.data.generate) and callable(pirf.data.check)
    assert callable(pirf.sampling.generate)
    from pirf.data import generate

    assert generate.__module__ == "pirf.data.generate" and generate is pirf.data.generate


def test_a_string_instead_of_a_list_of_names_is_refused():
    with pytest.raises(TypeError, match="list of names"):
        lazy_exports("pirf", {"errors": "PirfError"})
