"""The option reference, docs/profile.md, generated from the profile model.

Every option is listed with its type, default, example, description and merge rule across layered
files. `python -m imagegen.profile.reference docs/profile.md` rewrites the file; a test fails when
the file differs from what the model gives.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import tomli_w
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from imagegen.profile.model import Profile
from imagegen.profile.system import MERGED_LISTS

HEADER = """\
# Host profile option reference

Generated from the profile model (imagegen/profile/model.py, imagegen/profile/system.py) by
`python -m imagegen.profile.reference docs/profile.md`; do not edit by hand.

Layering: `imagegen render base.toml host.toml` reads the files in order. Tables merge key by key,
a later file's value for a key wins, and a list replaces the earlier list as a whole, except where
an option says its lists merge. `imagegen show` prints the merged profile with the file of every value.
`NAME` in a key stands for a name the profile chooses (a user, a unit, a path).
"""


def type_name(ann: Any) -> str:
    """A person's reading of a field's annotation: 'list of string', 'table of User', ..."""
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return "one of " + ", ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (types.UnionType, typing.Union):
        names = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(names)
        return f"{text} (optional)" if type(None) in args else text
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"table of {type_name(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "table"
    return {str: "string", int: "integer", bool: "boolean"}.get(ann, getattr(ann, "__name__", str(ann)))


def _model_in(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside an annotation, and whether it sits in a table keyed by name."""
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Annotated:
        return _model_in(args[0])
    if origin is dict:
        model, _ = _model_in(args[1])
        return model, model is not None
    if origin in (types.UnionType, typing.Union):
        for arg in args:
            model, keyed = _model_in(arg)
            if model is not None:
                return model, keyed
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    return None, False


def _toml(key: str, value: Any) -> str:
    try:
        return tomli_w.dumps({key: value}).strip()
    except TypeError:
        return f"{key} = {value!r}"


def _bare(ann: Any) -> Any:
    """The annotation without Annotated and without None."""
    if get_origin(ann) is Annotated:
        return _bare(get_args(ann)[0])
    if get_origin(ann) in (types.UnionType, typing.Union):
        rest = [a for a in get_args(ann) if a is not type(None)]
        return _bare(rest[0]) if len(rest) == 1 else ann
    return ann


def merge_rule(path: tuple[str, ...], ann: Any) -> str:
    bare = _bare(ann)
    if path in MERGED_LISTS:
        return "lists merge: each layer's elements are added to the earlier layers'"
    if get_origin(bare) is dict or (isinstance(bare, type) and issubclass(bare, BaseModel)):
        return "tables merge key by key"
    if get_origin(bare) is list:
        return "a later layer's list replaces the earlier one"
    return "a later layer's value replaces the earlier one"


def split_description(info: FieldInfo, path: tuple[str, ...]) -> tuple[str, str]:
    """The description without its merge sentence, and the merge rule (the description's own where it
    states one)."""
    body, _, rule = (info.description or "").partition("Merge: ")
    return body.strip() or "(not described yet)", rule.strip().rstrip(".") or merge_rule(path, info.annotation)


def _field(lines: list[str], key: str, path: tuple[str, ...], info: FieldInfo) -> None:
    lines.append(f"### `{key}`")
    lines.append("")
    description, rule = split_description(info, path)
    lines.append(description)
    lines.append("")
    lines.append(f"- Type: {type_name(info.annotation)}")
    if info.is_required():
        lines.append("- Default: none, required")
    else:
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            lines.append("- Default: the table's defaults")
        elif default is None:
            lines.append("- Default: not set")
        else:
            lines.append(f"- Default: `{_toml(path[-1], default).split(' = ', 1)[-1]}`")
    lines.append(f"- Merge: {rule}")
    if info.examples:
        lines.append("- Example:")
        lines.append("")
        lines.append("  ```toml")
        lines += [f"  {line}" for line in _toml(path[-1], info.examples[0]).splitlines()]
        lines.append("  ```")
    lines.append("")


def _section(lines: list[str], model: type[BaseModel], prefix: str, path: tuple[str, ...]) -> None:
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        sub, keyed = _model_in(info.annotation)
        if sub is not None:
            title = f"{key}.NAME" if keyed else key
            lines.append(f"## `{'[' + title + ']'}`")
            lines.append("")
            description, rule = split_description(info, path + (name,))
            lines.append(description if info.description else (sub.__doc__ or "").strip() or description)
            if keyed and sub.__doc__:
                lines.append("")
                lines.append(f"Each entry: {sub.__doc__.strip()}")
            lines.append("")
            lines.append(f"- Merge: {rule}")
            lines.append("")
            _section(lines, sub, title, path + (name,) + (("NAME",) if keyed else ()))
        else:
            _field(lines, key, path + (name,), info)


def reference() -> str:
    lines = [HEADER]
    _section(lines, Profile, "", ())
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m imagegen.profile.reference docs/profile.md", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
