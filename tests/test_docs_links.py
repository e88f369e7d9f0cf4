"""Every relative link in README.md and docs/*.md leads to a file that exists, and to a heading in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation but '-' and '_' dropped,
    spaces as '-'."""
    found = set()
    in_block = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif not in_block and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


LINKS = [(doc, target) for doc in DOCS for target in _LINK.findall(doc.read_text())
         if not re.match(r"[a-z]+:", target)]


def test_there_are_links_to_check() -> None:
    assert len(LINKS) > 20


@pytest.mark.parametrize(("doc", "target"), LINKS, ids=[f"{d.name}->{t}" for d, t in LINKS])
def test_a_relative_link_leads_somewhere(doc: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.exists(), f"{doc.name}: {target}: no such file"
    if anchor:
        assert anchor in anchors(dest.read_text()), f"{doc.name}: {target}: no such heading in {dest.name}"


def test_the_anchor_rule_is_githubs() -> None:
    assert anchors("## The store: no-op build and test (`bench/store_cli_bench.py`)\n") == {
        "the-store-no-op-build-and-test-benchstore_cli_benchpy"}
