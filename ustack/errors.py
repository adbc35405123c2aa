"""Errors the stack raises beyond the builtin OSError subclasses."""

from __future__ import annotations

import errno
import os


class SetupError(RuntimeError):
    """The stack could not be brought up; the message says what to do."""


def os_error(code: int, detail: str) -> OSError:
    """Build the builtin OSError subclass for `code` (e.g. ConnectionResetError)."""
    return OSError(code, f"{os.strerror(code)}: {detail}")


__all__ = ["SetupError", "os_error", "errno"]
