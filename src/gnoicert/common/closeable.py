"""One base for objects that own a resource: leaving a `with` block closes them."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closeable:
    """Subclasses define `close()`; `with obj:` calls it however the block ends."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
