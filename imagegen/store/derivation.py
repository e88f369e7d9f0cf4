"""A derivation: what a stage builds (name, stage) and everything it is built from (inputs).

The store path of a derivation is a digest of its canonical JSON, so two derivations with the
same name, stage and inputs name the same store entry in every process and on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from imagegen.errors import UsageError
from imagegen.store.entry import Entry
from imagegen.store.hashing import canonical_json, check_json, short_digest, tree_digest

# Bumped when the canonical form changes, so old entries are never mistaken for new ones.
FORMAT = "imagegen-store-1"

# The characters Nix allows in a store path name; no leading dot so entries never hide.
_NAME = re.compile(r"[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,150}")


@dataclass(frozen=True)
class FileTree:
    """An input that is a file or directory on disk, hashed by content (see tree_digest).

    `exclude` holds fnmatch patterns of relative paths to leave out (e.g. "*/__pycache__").
    """

    path: Path
    exclude: tuple[str, ...] = ()


def check_name(name: str, what: str = "name") -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"store {what} {name!r} is not allowed",
            "use letters, digits and + - . _ ? = (no leading dot, at most 151 characters)",
        )
    return name


@dataclass(frozen=True, eq=False)
class Derivation:
    """A stage's declared inputs; `hash` and `path_name` identify its store entry.

    inputs maps input names to strings, numbers, booleans, None, lists, nested mappings,
    FileTree (hashed by content when the derivation is made), or store Entry objects (hashed by
    their store path name and recorded as references, which keep them alive in gc).
    A pathlib.Path is refused: an absolute location must never reach the hash.
    Mapping keys starting with "$" are reserved for the canonical form of trees and entries.
    """

    name: str
    stage: str
    inputs: Mapping[str, Any]
    canonical: Mapping[str, Any] = field(init=False, repr=False)
    references: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_name(self.stage, "stage")
        references: set[str] = set()
        inputs = _canonical(self.inputs, "inputs", references)
        object.__setattr__(
            self, "canonical", {"format": FORMAT, "name": self.name, "stage": self.stage, "inputs": inputs}
        )
        object.__setattr__(self, "references", tuple(sorted(references)))

    def to_json(self) -> str:
        """The canonical JSON the hash is taken of."""
        return canonical_json(self.canonical)

    @property
    def hash(self) -> str:
        """32 characters of Nix base32: sha256 of to_json(), truncated to 160 bits."""
        return short_digest(self.to_json().encode())

    @property
    def path_name(self) -> str:
        """The store entry's directory name, `<hash>-<name>`."""
        return f"{self.hash}-{self.name}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Derivation) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())


def _canonical(value: Any, where: str, references: set[str]) -> Any:
    if isinstance(value, FileTree):
        digest, count = tree_digest(value.path, value.exclude)
        return {"$tree": digest, "items": count}
    if isinstance(value, Entry):
        references.add(value.path_name)
        return {"$entry": value.path_name}
    if isinstance(value, PurePath):
        raise UsageError(
            f"derivation {where} is a path ({value})",
            "wrap it in FileTree(...) to hash its content, or pass a string that does not depend on location",
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"derivation {where}: key {key!r} is not a string", "use string keys")
            if key.startswith("$"):
                raise UsageError(f"derivation {where}: key {key!r} starts with '$'", "rename the input")
            out[key] = _canonical(item, f"{where}.{key}", references)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item, f"{where}[{i}]", references) for i, item in enumerate(value)]
    check_json(value, f"derivation {where}")
    return value
