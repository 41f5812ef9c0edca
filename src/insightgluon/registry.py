"""A tiny name -> factory registry used for networks, losses and other plug-ins."""
from typing import Callable, Dict, Iterator, List, Optional

from insightgluon.errors import ConfigError


class Registry:
    """Maps names to factories; an unknown name raises an error listing the valid ones.

    Parameters
    ----------
    kind : str
        What the registry holds ("network", "loss", ...), used in error messages.

    Examples
    --------
    >>> NETWORKS = Registry("network")
    >>> @NETWORKS.register("r50")
    ... def r50(**kw): ...
    >>> NETWORKS.get("r50")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable] = {}

    def register(self, name: Optional[str] = None, *aliases: str) -> Callable:
        """Decorator registering ``fn`` under ``name`` (default: the function's name)."""

        def deco(fn: Callable) -> Callable:
            for key in (name or fn.__name__, *aliases):
                if key in self._items:
                    raise KeyError(f"{self.kind} '{key}' is registered twice")
                self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable:
        """Return the factory registered as ``name``."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> List[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def in_order(self) -> List[str]:
        """All registered names in the order they were registered."""
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
