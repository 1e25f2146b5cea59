"""A bounded memo of a pure function whose results may also come from elsewhere (`Memo.remember`): the per-answer
work of a run is memoised, and a large run computes it ahead in a second process (`prepare.py`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Memo(Generic[P, R]):
    """`function` memoised on its positional arguments, keeping the `maxsize` results added last.

    Oldest out rather than least recently used (`functools.lru_cache` cannot take results computed elsewhere): a run
    meets its answers prompt by prompt, so the oldest result is the one it is done with.
    """

    def __init__(self, function: Callable[P, R], maxsize: int) -> None:
        self._maxsize = maxsize
        self._results: dict[tuple[Hashable, ...], R] = {}
        self.__doc__ = function.__doc__
        self.__wrapped__ = function
        """The function memoised (what a result not remembered is computed with)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs:
            raise TypeError(f"{self.__wrapped__.__name__} is memoised on positional arguments only")
        try:
            return self._results[args]
        except KeyError:
            result = self.__wrapped__(*args, **kwargs)
            self.remember(args, result)
            return result

    def remember(self, args: tuple[Hashable, ...], result: R) -> None:
        """Keep `result` as the function's result for `args` (computed elsewhere: it must be what the call gives)."""
        results = self._results
        results[args] = result
        if len(results) > self._maxsize:
            del results[next(iter(results))]

    def cache_clear(self) -> None:
        """Forget every result."""
        self._results.clear()


def memoized(maxsize: int) -> Callable[[Callable[P, R]], Memo[P, R]]:
    """Decorate a pure function as a `Memo` of `maxsize` results."""

    def decorate(function: Callable[P, R]) -> Memo[P, R]:
        return Memo(function, maxsize)

    return decorate
