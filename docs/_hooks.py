"""mkdocs hook: the site's home page is README.md itself (one text, no copy to keep in sync).

README links into ``docs/`` for readers on the repository page; on the site the same pages are
relative to the docs folder, and links to files outside it become plain code.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

#: Sphinx cross-reference roles in the numpydoc docstrings (``:func:`name```), which render as
#: the role's text followed by the code span; the API pages show the code span alone.
_SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):(?=<code>)")


def readme_for_site(text: str) -> str:
    """README's Markdown with its links rewritten for a page at the root of docs/."""
    # links to the repository outside docs/ (examples/, CONTRIBUTING.md, docs/ itself)
    text = re.sub(r"\[([^\]]+)\]\((?:docs/|examples/|CONTRIBUTING\.md)\)", r"\1", text)
    return text.replace("](docs/", "](")


def on_page_read_source(page, config):
    if page.file.src_uri == "index.md":
        return readme_for_site(README.read_text(encoding="utf-8"))
    return None


def on_page_content(html, page, config, files):
    return _SPHINX_ROLE.sub("", html)
