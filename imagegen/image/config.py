"""What one image build asks of mkosi: a typed request and the mkosi command line made from it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imagegen
from imagegen.errors import UsageError
from imagegen.profile.load import LoadedProfile
from imagegen.profile.model import check_crypt_hash, check_mirror_url, check_release
from imagegen.render.distro import LAYOUTS

DISTRIBUTIONS = ("debian", "arch")
DEFAULT_RELEASES = {name: layout.default_release for name, layout in LAYOUTS.items()}


def repo_root() -> Path:
    """The checkout that holds mkosi.conf.d/ and overlays/ (imagegen runs from a clone)."""
    return Path(imagegen.__file__).resolve().parent.parent


@dataclass(frozen=True)
class ImageContent:
    """What the profile decides of mkosi's [Content]; the defaults are imagegen's own settings."""

    packages: tuple[str, ...] = ()
    remove_packages: tuple[str, ...] = ()
    locale: str = "C.UTF-8"
    keymap: str = "us"
    timezone: str = "UTC"
    kernel_command_line: tuple[str, ...] = ()
    # Which profile file asked for each package, to name it when the package does not exist.
    package_sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def inputs(self) -> dict[str, Any]:
        """The part that decides the image, for the build derivation."""
        return {"packages": list(self.packages), "remove_packages": list(self.remove_packages),
                "locale": self.locale, "keymap": self.keymap, "timezone": self.timezone,
                "kernel_command_line": list(self.kernel_command_line)}

    def source_of(self, package: str) -> str | None:
        return dict(self.package_sources).get(package)


def image_content(loaded: LoadedProfile) -> ImageContent:
    profile = loaded.profile
    sources: dict[str, str] = {}
    for kind in ("install", "remove"):
        for i, name in enumerate(getattr(profile.packages, kind)):
            sources.setdefault(name, str(loaded.origin(("packages", kind, i))))
    system = profile.system
    return ImageContent(
        packages=tuple(profile.packages.to_install()), remove_packages=tuple(profile.packages.to_purge()),
        locale=system.locale, keymap=system.keymap, timezone=system.timezone,
        kernel_command_line=tuple(system.kernel_command_line), package_sources=tuple(sorted(sources.items())),
    )


@dataclass(frozen=True)
class BuildRequest:
    """Everything that decides an image: the overlay, the distribution, the repositories and the variant."""

    overlay: Path
    out_dir: Path
    distribution: str = "debian"
    release: str | None = None
    mirror: str | None = None
    lab: bool = False
    hostname: str | None = None
    root_password_hash: str | None = None
    profile_hash: str | None = None
    cache_root: Path | None = None
    content: ImageContent = ImageContent()
    # Keys the manifest's overlay digest (the host's hash key): the overlay holds the Wi-Fi keys, and a
    # plain digest of it is a test of a guessed passphrase for whoever knows the rest of it (the DUID
    # is on the network). Not in repr: a request may be printed.
    digest_key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise UsageError(
                f"image.distribution: {self.distribution!r} is not supported",
                hint=f"use one of {', '.join(DISTRIBUTIONS)}",
            )
        if not self.overlay.is_dir():
            raise UsageError(f"overlay {self.overlay} is not a directory", hint="render the profile first")
        # The profile's model has checked these already; a release from the building machine's
        # os-release or a --mirror option has not, and each lands in a path, an apt source or mkosi's argv.
        checks = (("image.release", check_release, self.release), ("image.mirror", check_mirror_url, self.mirror),
                  ("image.root_password_hash", check_crypt_hash, self.root_password_hash))
        for key, check, value in checks:
            if value is not None:
                try:
                    check(value)
                except ValueError as e:
                    raise UsageError(f"{key}: {e}") from None

    @property
    def resolved_release(self) -> str:
        return self.release or DEFAULT_RELEASES[self.distribution]

    @property
    def variant(self) -> str:
        return "lab" if self.lab else "plain"

    @property
    def cache_dir(self) -> Path:
        # One cache per distribution, release and variant: the lab's extra packages would otherwise
        # invalidate the plain image's cache on every switch.
        root = self.cache_root or default_cache_root()
        return root / f"{self.distribution}~{self.resolved_release}~{self.variant}"


def default_cache_root() -> Path:
    return repo_root() / ".cache" / "mkosi"


@dataclass(frozen=True)
class MkosiInputs:
    """The generated trees and directories one mkosi run reads and writes."""

    output_dir: Path
    cache_dir: Path
    overlay: Path
    policy_tree: Path
    # Debian sources for the image (Debian images only) and for the tools tree (always Debian trixie).
    sandbox_tree: Path | None
    tools_sandbox_tree: Path
    lab_tree: Path | None
    # A private mkosi config file with RootPassword= (write_root_password_config), when the profile sets one.
    root_password_config: Path | None = None


ROOT_PASSWORD_CONFIG = "root-password.conf"


def write_root_password_config(request: BuildRequest, directory: Path) -> Path | None:
    """Write the root password hash into a mode 0600 mkosi config file in directory, for `--include`.

    On mkosi's command line the hash would be readable by every local user (/proc/PID/cmdline) and
    in every logged command line; a crypt hash is what an offline guesser needs.
    """
    if not request.root_password_hash:
        return None
    path = directory / ROOT_PASSWORD_CONFIG
    # mkosi expands %-specifiers in values; crypt's alphabet has no '%', but a literal one stays literal.
    value = request.root_password_hash.replace("%", "%%")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[Content]\nRootPassword=hashed:{value}\n")
    return path


def _tree(option: str, path: Path) -> str:
    # mkosi splits a tree option at ',' (a list) and ':' (SOURCE:TARGET), --include at ',': such a path would name other
    # trees, or copy another directory into the image. It has no escape for either.
    text = os.fspath(path)
    if any(c in text for c in ",:\n"):
        raise UsageError(f"{text} holds ',' or ':', which mkosi reads as separators in {option}",
                         "use a store, cache and checkout directory whose path has neither")
    return f"{option}={text}"


def mkosi_argv(request: BuildRequest, inputs: MkosiInputs, *, verb: str = "build") -> list[str]:
    """The arguments after `python -m mkosi`; the static settings live in mkosi.conf.d/."""
    argv = [
        "--directory", str(repo_root()),
        "--distribution", request.distribution,
        "--release", request.resolved_release,
        "--output-directory", str(inputs.output_dir),
        "--cache-directory", str(inputs.cache_dir),
    ]  # fmt: skip
    if request.lab:
        argv += ["--profile", "lab"]
    if request.mirror is not None and request.distribution != "debian":
        # Debian's repositories come from the sandbox tree; other distributions take Mirror=.
        argv += ["--mirror", request.mirror]
    if inputs.sandbox_tree is not None:
        argv += [_tree("--sandbox-tree", inputs.sandbox_tree)]
    argv += [_tree("--tools-tree-sandbox-tree", inputs.tools_sandbox_tree)]
    # Order matters: the policy tree first, the lab tree next, the rendered overlay last and whole, so
    # that the overlay wins and its hard links stay within one tree.
    argv += [_tree("--extra-tree", inputs.policy_tree)]
    if inputs.lab_tree is not None:
        argv += [_tree("--extra-tree", inputs.lab_tree)]
    argv += [_tree("--extra-tree", inputs.overlay)]
    content = request.content
    argv += [f"--package={name}" for name in content.packages]
    argv += [f"--remove-package={name}" for name in content.remove_packages]
    argv += [f"--locale={content.locale}", f"--keymap={content.keymap}", f"--timezone={content.timezone}"]
    # Appended to 10-image.conf's KernelCommandLine= (mkosi adds command line list values to the file's).
    argv += [f"--kernel-command-line={word}" for word in content.kernel_command_line]
    if request.hostname:
        argv += ["--hostname", request.hostname]
    if request.root_password_hash:
        if inputs.root_password_config is None:
            raise ValueError("a root password hash is set but no config file holds it (write_root_password_config)")
        argv += [_tree("--include", inputs.root_password_config)]
    if verb == "build":
        argv += ["--force"]
    argv += [verb]
    return argv
