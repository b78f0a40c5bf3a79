"""semcodec-bench: reference evaluation harness for semantic image compression.

Data flows one way: dataset -> sample -> codec.encode -> bytes -> codec.decode ->
reconstruction -> metrics -> store -> report.

The public Python API (:mod:`bench.api`) is re-exported here, loaded on first use so that
``import bench`` stays cheap::

    from bench import evaluate, load_results, summary
"""

from typing import Any

__version__ = "0.1.0"

_API = ("evaluate", "fetch", "load_results", "summary")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
