"""Every `imagegen …` command line in README.md and docs/*.md names commands and options that exist.

Each line is handed to the real command line parser with --help appended: the parser reads every
option before it acts on the eager --help, so an unknown command or option, or an option without its
value, fails here, while placeholders such as PROFILE or … need not be real values.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegen.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A command line in a code block (after environment assignments such as IMAGEGEN_STORE=DIR) or in
# an inline code span of the prose.
_BLOCK_LINE = re.compile(r"^\s*(?:[A-Z_]+=\S+\s+)*imagegen\s")
_INLINE = re.compile(r"`(imagegen [^`]+)`")


def command_lines(text: str) -> list[str]:
    """The imagegen command lines of a Markdown text, continuation lines joined, comments dropped."""
    found: list[str] = []
    in_block = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif (in_block or line.startswith("    ")) and _BLOCK_LINE.match(line):
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            found.append(line.strip())
        elif not in_block:
            found += _INLINE.findall(line)
        i += 1
    return found


def arguments(line: str) -> list[str]:
    """The words after `imagegen`; an optional part written [--json] counts as given."""
    words = shlex.split(line, comments=True)
    words = words[words.index("imagegen") + 1:]
    return [w[1:-1] if w.startswith("[-") and w.endswith("]") else w for w in words]


CASES = [(doc.relative_to(REPO).as_posix(), line) for doc in DOCS for line in command_lines(doc.read_text())]


def test_the_docs_have_command_lines_to_check() -> None:
    names = {name for name, _ in CASES}
    assert "README.md" in names and "docs/store.md" in names and len(CASES) > 30


def parses(line: str) -> tuple[bool, str]:
    result = CliRunner().invoke(app, arguments(line) + ["--help"])
    return result.exit_code == 0 and "Usage: " in result.stdout, result.output


@pytest.mark.parametrize(("doc", "line"), CASES, ids=[f"{d}:{line[:60]}" for d, line in CASES])
def test_a_documented_command_line_parses(doc: str, line: str) -> None:
    ok, output = parses(line)
    assert ok, f"{doc}: `{line}` does not parse:\n{output}"


def test_a_wrong_option_or_command_is_caught() -> None:
    # The check itself can fail: an option that build does not have, a command that does not exist,
    # an option whose value is missing.
    for line in ("imagegen build x.toml --no-such-option", "imagegen bulid x.toml", "imagegen test x.toml --repeat"):
        ok, output = parses(line)
        assert not ok, line
