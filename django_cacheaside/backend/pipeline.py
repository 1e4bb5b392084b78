"""What every group of backend commands shares: the client, and one way to send a pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError, RedisError

from django_cacheaside.backend import scripts
from django_cacheaside.backend.breaker import Breaker
from django_cacheaside.backend.direct import DirectCommands
from django_cacheaside.exceptions import BackendError


class Commands:
    client: redis.Redis
    _direct: DirectCommands | None
    breaker: Breaker

    # -- scripts -------------------------------------------------------------------------------

    def _load_scripts(self) -> None:
        for src in scripts.SCRIPTS.values():
            if self._direct is not None:
                self._direct.execute("SCRIPT", "LOAD", src)
            else:
                self.client.script_load(src)

    def _run_pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip and return their replies.

        Scripts go as EVALSHA; if the server lost them (restart, ``SCRIPT FLUSH``) they are loaded
        and the commands sent once more. Every command the app sends is safe to repeat.
        """
        for attempt in (1, 2):
            if self._direct is not None:
                replies = self._direct.execute_many(commands)
            else:
                pipe = self.client.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
                replies = pipe.execute(raise_on_error=False)
            errors = [reply for reply in replies if isinstance(reply, RedisError)]
            if not errors:
                return replies
            if attempt == 1 and any(isinstance(e, NoScriptError) for e in errors):
                self._load_scripts()
                continue
            raise errors[0]
        raise AssertionError("unreachable")


def as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    raise BackendError(f"unexpected reply of type {type(value).__name__}")
