"""A module imported where it is first used, not where it is named.

numpy and tifffile take a tenth of a second to import on a small acquisition PC, and a daemon that
ships only sidecars and small files (the copy layout) never needs them: the frame layouts and readers
name them as `np = lazy("numpy")`, and the import happens at the first attribute looked up (for a
frame layout, on the thread that imports the frame libraries beside the first scan:
acqd.memory.warm_imports). After that, lookups find the module's attributes directly.
"""

from __future__ import annotations

import importlib
import threading
import types
from typing import Any

_lock = threading.Lock()


class _Lazy(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__["_lazy_name"]
        with _lock:  # one import at a time (acqd.memory: a module seen half initialised by a second thread)
            module = importlib.import_module(name)
            self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def lazy(name: str) -> Any:
    """`name`, imported at its first use."""
    proxy = _Lazy(name)
    proxy.__dict__["_lazy_name"] = name
    return proxy
