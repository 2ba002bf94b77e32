"""Error roots shared by every package.

One shallow root (`ZTError`); subclasses exist only where a caller catches them. Protocol errors
say whose fault it is: the peer's (`RemoteProtocolError`) or ours (`LocalProtocolError`).
A deny is never an exception: it is a `Decision` value (see decision.py).
"""

from __future__ import annotations


class ZTError(Exception):
    """Root of every error raised by Sekimori code."""


class RemoteProtocolError(ZTError):
    """The peer sent something we cannot accept; `status_hint` is the HTTP status to answer with."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class LocalProtocolError(ZTError):
    """We were asked to do something the protocol does not allow (a bug on our side)."""


class ConfigError(ZTError):
    """A configuration value is invalid; the message names the field."""
