"""One parser for image sizes written as ``"AxB"`` or ``[A, B]``, with the order named.

Two conventions meet in this project: configuration in H×W (the papers' tables: SPIC's
``size: "256x512"``) and segmenter inputs in W×H (PIL's ``resize((width, height))``:
ESPNetv2's ``input_size: "1024x512"``). Every caller names the order it reads, and gets a
:class:`Size` whose fields say which number is which.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from bench.errors import ConfigError

#: How a size is written: "HxW" (height first) or "WxH" (width first, as PIL).
SizeOrder = Literal["HxW", "WxH"]


class Size(NamedTuple):
    """An image size in pixels; unpacks as (height, width). :attr:`wh` is PIL's (width, height)."""

    height: int
    width: int

    @property
    def wh(self) -> tuple[int, int]:
        return self.width, self.height


def parse_size(size: Any, order: SizeOrder, *, what: str = "size") -> Size:
    """``"AxB"`` (``x`` or ``X``) or a pair ``[A, B]`` read in ``order``; both > 0.
    Raises :class:`ConfigError` naming ``what`` and the expected order."""
    example = "256x512" if order == "HxW" else "1024x512"
    hint = f"give {'HEIGHTxWIDTH' if order == 'HxW' else 'WIDTHxHEIGHT'}, e.g. {example}"
    try:
        a, b = (int(v) for v in (size.lower().split("x") if isinstance(size, str) else size))
    except (TypeError, ValueError, AttributeError):
        raise ConfigError(f"{what} {size!r} is not {order}", hint) from None
    if a <= 0 or b <= 0:
        raise ConfigError(f"{what} {size!r} must be positive", hint)
    return Size(a, b) if order == "HxW" else Size(b, a)
