"""The base of the conformance suites: hooks a backend's test class must provide.

A suite marks its hooks (fixtures and back doors) ``@abstractmethod``. pytest quietly skips
abstract classes, so a backend's ``Test*`` class that forgot a hook would pass by running
nothing; instead :class:`ConformanceSuite` refuses to define it, and the module fails to import.
"""

from __future__ import annotations

from abc import ABC
from typing import Any


class ConformanceSuite(ABC):  # noqa: B024 - the suites built on it declare the hooks
    """Subclasses named ``Test*`` must implement every abstract hook of the suite."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("Test"):
            return  # an intermediate suite may leave hooks abstract
        missing = sorted(
            name
            for base in cls.__mro__[1:]
            for name in getattr(base, "__abstractmethods__", ())
            if getattr(getattr(cls, name, None), "__isabstractmethod__", False)
        )
        if missing:
            raise TypeError(f"{cls.__name__} lacks the suite hooks: {', '.join(missing)}")
