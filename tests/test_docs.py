"""The documentation site's structure: every experiment has its page in the nav, every page
is in the nav, and every ``::: name`` of the API reference names a real object (``make docs``
builds the site itself, with warnings as errors)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from softmix.experiments import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:"):text.index("\nplugins:")]
    return set(re.findall(r"([\w./-]+\.md)\s*$", nav, re.MULTILINE))


def test_every_experiment_has_a_page_in_the_nav():
    nav = _nav_pages()
    for name in REGISTRY:
        assert (DOCS / "experiments" / f"{name}.md").is_file(), name
        assert f"experiments/{name}.md" in nav, name


def test_every_page_is_in_the_nav():
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == _nav_pages()


def _api_targets() -> list[str]:
    return sorted({m for p in (DOCS / "api").glob("*.md")
                   for m in re.findall(r"^::: ([\w.]+)\s*$", p.read_text(), re.MULTILINE)})


@pytest.mark.parametrize("target", _api_targets())
def test_api_reference_names_real_objects(target):
    module, _, attr = target.rpartition(".")
    try:
        importlib.import_module(target)
    except ModuleNotFoundError:
        assert hasattr(importlib.import_module(module), attr), target
