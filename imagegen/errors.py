"""The errors imagegen reports to a person, each with what is wrong and what to do."""

from __future__ import annotations


class ImagegenError(Exception):
    """An error that ends a command with a message instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(ImagegenError):
    """Bad input from the person: a profile, an option, a path. Exit code 2, nothing written."""

    exit_code = 2


class ProfileError(UsageError):
    """One or more problems in host profiles; each line names file, key path, problem and fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class CommandError(ImagegenError):
    """An external command failed."""

    def __init__(self, argv: list[str], returncode: int, output: str = "") -> None:
        tail = "\n".join(output.strip().splitlines()[-20:])
        message = f"command failed with exit code {returncode}: {' '.join(argv)}"
        if tail:
            message += "\n" + tail
        super().__init__(message)
        self.argv = argv
        self.returncode = returncode
        self.output = output
