"""Load host profiles, layer them (later files override earlier ones key by key, lists replace, except
the lists of system.MERGED_LISTS, which every layer adds to) and validate the result, remembering which
file set each value (and each element of a merged list)."""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from imagegen.errors import ProfileError
from imagegen.profile.checks import Finding, check_profile
from imagegen.profile.model import Profile
from imagegen.profile.system import MERGED_LISTS, check_accounts

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedProfile:
    """A validated profile and where it came from."""

    profile: Profile
    files: tuple[Path, ...]
    # Every leaf (and every list, which replaces as a whole) -> the file that set it.
    origins: dict[KeyPath, Path]
    merged: dict[str, Any]

    @property
    def base_dir(self) -> Path:
        """The directory of the last profile file: relative paths in the profile and the host
        state file are taken from there."""
        return self.files[-1].resolve().parent

    def origin(self, path: KeyPath) -> Path:
        return _origin(self.origins, path, self.files[-1])

    def test_scripts(self) -> tuple[Path, ...]:
        """The files of tests.scripts, each resolved from the profile file that names it, in order;
        ProfileError when one is not a regular .py file. Checked only where the tests run: a profile
        copied without its test files still renders and builds."""
        found, problems = [], []
        for i, name in enumerate(self.profile.tests.scripts):
            origin = self.origin(("tests", "scripts", i))
            path = Path(name) if Path(name).is_absolute() else origin.parent / name
            if why := script_problem(path):
                problems.append(f"{origin}: tests.scripts[{i}]: {path}: {why}")
            found.append(path)
        if problems:
            raise ProfileError(problems)
        return tuple(found)


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, str) and not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            # A key as TOML quotes it, so that a line break or a '.' inside it cannot split the message.
            part = json.dumps(part)
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _origin(origins: dict[KeyPath, Path], path: KeyPath, default: Path) -> Path:
    # The deepest key path with a known origin: for a missing key, the table that lacks it.
    for n in range(len(path), -1, -1):
        if path[:n] in origins:
            return origins[path[:n]]
        # A table set by several files: the last file that touched any key under it.
        below = [p for k, p in origins.items() if k[:n] == path[:n] and n > 0]
        if below:
            return below[-1]
    return default


# Far above any host profile; /dev/zero or a log file named by mistake stops here, not at the memory's end.
PROFILE_LIMIT = 4 * 1024 * 1024


def _read(path: Path) -> dict[str, Any]:
    try:
        # A FIFO is allowed (`imagegen show <(generate-profile)`): it is read to its end, but bounded.
        with path.open("rb") as f:
            data = f.read(PROFILE_LIMIT + 1)
    except FileNotFoundError:
        raise ProfileError([f"{path}: no such profile file; check the path"]) from None
    except IsADirectoryError:
        raise ProfileError([f"{path}: is a directory, not a profile; name a TOML file"]) from None
    except OSError as e:
        raise ProfileError([f"{path}: cannot read: {e.strerror}; check the path and its permissions"]) from None
    if len(data) > PROFILE_LIMIT:
        raise ProfileError([f"{path}: larger than {PROFILE_LIMIT >> 20} MiB, not a host profile; name a TOML file"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError([f"{path}: not a UTF-8 TOML file (byte {e.start} is not UTF-8); save it as UTF-8 "
                            "text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError([f"{path}: not valid TOML: {e}; fix the syntax at that line"]) from None


def merge(layers: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[dict[str, Any], dict[KeyPath, Path]]:
    merged: dict[str, Any] = {}
    origins: dict[KeyPath, Path] = {}

    def forget(prefix: KeyPath) -> None:
        for key in [k for k in origins if k[: len(prefix)] == prefix]:
            del origins[key]

    def into(dst: dict[str, Any], src: dict[str, Any], prefix: KeyPath, path: Path) -> None:
        for key, value in src.items():
            here = prefix + (key,)
            if isinstance(value, dict) and isinstance(dst.get(key), dict):
                into(dst[key], value, here, path)
                continue
            if here in MERGED_LISTS and isinstance(value, list):
                previous = dst.get(key)
                old: list[Any] = previous if isinstance(previous, list) else []
                if not old:
                    forget(here)
                added = [v for i, v in enumerate(value) if v not in old and v not in value[:i]]
                for i, _ in enumerate(added, start=len(old)):
                    origins[here + (i,)] = path
                dst[key] = [*old, *added]
                origins[here] = path
                continue
            forget(here)
            if isinstance(value, dict):
                dst[key] = {}
                into(dst[key], value, here, path)
                origins.setdefault(here, path)
            else:
                dst[key] = value
                origins[here] = path

    for path, data in layers:
        into(merged, data, (), path)
    return merged, origins


def load_profiles(paths: Sequence[Path]) -> LoadedProfile:
    """Read, layer and validate profile files; raise ProfileError listing every problem."""
    if not paths:
        raise ProfileError(["no profile given; name at least one TOML host profile, e.g. examples/laptop.toml"])
    files = tuple(Path(p) for p in paths)
    merged, origins = merge([(p, _read(p)) for p in files])
    try:
        profile = Profile.model_validate(merged)
    except ValidationError as e:
        raise ProfileError(_pydantic_problems(e, merged, origins, files[-1])) from None
    findings = check_profile(profile)
    findings += [Finding(key, message) for key, message in check_accounts(
        profile.users, profile.groups, profile.image.distribution or "debian")]
    if findings:
        raise ProfileError([
            f"{_origin(origins, f.path, files[-1])}: {format_path(f.path)}: {f.message}" for f in findings
        ])
    return LoadedProfile(profile=profile, files=files, origins=origins, merged=merged)


def script_problem(path: Path) -> str | None:
    """Why path cannot be a test script (None: it can): it must be a regular .py file."""
    if path.suffix != ".py":
        return "not a Python file; name a file ending in .py"
    if not path.exists():
        return "no such file; create it or fix the path (relative to the profile that names it)"
    if not path.is_file():
        return "not a regular file; name a Python file"
    return None


def _unwrap(ann: Any) -> Any:
    """The model class inside an annotation such as `list[Network]` or `Eap | None`."""
    args = get_args(ann)
    if get_origin(ann) in (list, dict):
        return _unwrap(args[-1])
    for arg in args:
        found = _unwrap(arg)
        if found is not None:
            return found
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return None


def _parent_model(path: KeyPath) -> type[BaseModel] | None:
    model: Any = Profile
    for part in path:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        if part in fields:
            model = _unwrap(fields[part].annotation)
        # A key of a dict-valued field (an interface name) keeps the value model.
        if model is None:
            return None
    return model


_UNION_BRANCHES = ("str", "int", "bool", "[key]")


def _pydantic_problems(
    error: ValidationError, merged: dict[str, Any], origins: dict[KeyPath, Path], default: Path
) -> list[str]:
    problems = []
    for err in error.errors():
        # pydantic adds the name of the failed branch of a union (e.g. 'str', 'function-after[...]')
        # and '[key]' for dict keys; a person sees key paths only.
        path: KeyPath = tuple(
            p for p in err["loc"]
            if not (isinstance(p, str) and (p in _UNION_BRANCHES or p.startswith(("function-", "literal["))))
        )
        kind = err["type"]
        message = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = str(path[-1])
            model = _parent_model(path[:-1])
            known = list(getattr(model, "model_fields", {})) if model is not None else []
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            message = f"unknown key {key!r}; {hint}"
        elif kind == "missing":
            message = f"required key {str(path[-1])!r} is missing; add it"
        elif kind == "literal_error":
            message = f"{err['input']!r} is not allowed; use {err['msg'].removeprefix('Input should be ')}"
        elif kind in ("string_type", "int_type", "bool_type", "list_type", "dict_type", "model_type"):
            expected = {"string_type": "a string", "int_type": "an integer", "bool_type": "true or false",
                        "list_type": "a list", "dict_type": "a table", "model_type": "a table"}[kind]
            message = f"{err['input']!r} has the wrong type; write {expected}"
        elif kind in ("too_short", "greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            message = f"{err['input']!r}: {err['msg'].lower()}"
        problems.append(f"{_origin(origins, path, default)}: {format_path(path)}: {message}")
    # One error for a key is enough; union branches can report the same key twice.
    return list(dict.fromkeys(problems))
