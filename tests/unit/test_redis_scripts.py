"""Lua scripts run by SHA (`wharf_shared.redis.Script`) against a real Redis."""

from __future__ import annotations

import uuid

from wharf_shared.redis import Script, open_redis

_ECHO = "return {KEYS[1], ARGV[1], #KEYS, #ARGV}"


async def test_script_runs_with_keys_and_args(redis_url: str) -> None:
    redis = open_redis(redis_url)
    try:
        script = Script(redis, _ECHO)
        assert await script(keys=["k"], args=["a", 2]) == [b"k", b"a", 1, 2]
    finally:
        await redis.aclose()


async def test_script_unknown_to_redis_is_loaded_and_run(redis_url: str) -> None:
    """What a Redis restart or SCRIPT FLUSH leaves (not flushed here: the server is shared)."""
    redis = open_redis(redis_url)
    try:
        script = Script(redis, f"-- {uuid.uuid4()}\n{_ECHO}")
        assert (await redis.script_exists(script.sha)) == [False]
        assert await script(keys=["k"], args=["a"]) == [b"k", b"a", 1, 1]
        assert (await redis.script_exists(script.sha)) == [True]
    finally:
        await redis.aclose()
