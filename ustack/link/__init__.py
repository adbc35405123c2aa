"""Links: where the stack's IPv4 packets come from and go to."""

from ustack.link.base import Link

__all__ = ["Link"]
