"""Mapping foreign errors to project errors: each adapter declares one table, and its public calls go through it.

A table is a sequence of (what matches, project error class); the first row that matches wins and the
project error is raised `from` the original. Errors no row matches propagate unchanged (they are bugs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shared.core.errors import CloudUnavailable

Match = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
ErrorTable = Sequence[tuple[Match, type[CloudUnavailable]]]
T = TypeVar("T")


def _matches(match: Match, exc: BaseException) -> bool:
    if isinstance(match, type | tuple):
        return isinstance(exc, match)
    return match(exc)


def translate(table: ErrorTable, operation: str, exc: BaseException) -> CloudUnavailable | None:
    """The project error `exc` maps to under `table`, or None if no row matches."""
    for match, error in table:
        if _matches(match, exc):
            return error(operation, exc)
    return None


def maps_errors(table: ErrorTable) -> Callable[[type[T]], type[T]]:
    """Class decorator: every public method of the class raises through `table`."""

    def wrap(method: Callable[..., Any], operation: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def mapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                project_error = translate(table, operation, exc)
                if project_error is None:
                    raise
                raise project_error from exc

        return mapped

    def decorate(cls: type[T]) -> type[T]:
        for name in dir(cls):
            attribute = getattr(cls, name)
            if not name.startswith("_") and callable(attribute) and not isinstance(attribute, type):
                setattr(cls, name, wrap(attribute, name))
        return cls

    return decorate
