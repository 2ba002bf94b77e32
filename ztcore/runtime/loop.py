"""Process start-up for the broker and the agent: the event loop (uvloop where installed) and logging."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, Literal, TypeVar

import typer

T = TypeVar("T")

# `--loop asyncio` runs on the stdlib loop: what a Windows agent has, and how tests cover it.
LoopOption = Annotated[Literal["auto", "asyncio"],
                       typer.Option("--loop", envvar="SEKIMORI_EVENT_LOOP",
                                    help="auto: uvloop where installed; asyncio: the stdlib loop")]


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def setup_logging(verbose: bool) -> None:
    """Log lines for the broker and the agent processes (stderr; INFO with -v)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
