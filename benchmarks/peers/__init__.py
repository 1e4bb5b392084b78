"""The libraries ``run.py`` compares with, each measured in a process of its own (``peer.py``).

One small module per library, each a :class:`peers.base.Peer`; ``PEERS`` maps a name to its module
and the import that tells whether it is installed. A peer module imports its library only in
its functions, so this package can be imported where the library is absent.
"""

from __future__ import annotations

import importlib
import importlib.util

from peers.base import Peer

# name -> (module of this package, the import that must be found)
PEERS: dict[str, tuple[str, str]] = {
    "django-redis": ("peers.with_django_redis", "django_redis"),
    "cacheops": ("peers.with_cacheops", "cacheops"),
    "cachalot": ("peers.with_cachalot", "cachalot"),
}


def installed(name: str) -> bool:
    return importlib.util.find_spec(PEERS[name][1]) is not None


def load(name: str) -> Peer:
    module = importlib.import_module(PEERS[name][0])
    peer: Peer = module.PEER
    return peer
