"""What the ``python -m srl_trainers.<command>`` CLIs share: one way to report bad input.

Every bad option or value is one line on stderr, ``<prog>: error: <message>``, and exit code
2 (argparse's code for usage errors), never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import typing

__all__ = ["ArgumentParser"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors, its own and the command's (:meth:`fail`), are one line."""

    def error(self, message: str) -> typing.NoReturn:
        self.fail(f"{message} (see --help)")

    def fail(self, error: str | BaseException) -> typing.NoReturn:
        """Exit with code 2 and ``error`` on one line of stderr (line breaks folded)."""
        self.exit(2, f"{self.prog}: error: {' '.join(str(error).split())}\n")
