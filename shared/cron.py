"""Harbor's cron: six fields, seconds first (`0 0 2 * * *`: at 02:00:00 every day), in UTC.

The ui validates a schedule when a policy is written; the job service's scheduler asks for the
next fire time after a moment. croniter reads the expression.
"""

from __future__ import annotations

import datetime as dt

from croniter import croniter

from wharf_shared.errors.domain import InvalidInput


def validate(expression: object) -> str:
    """The expression, stripped; InvalidInput unless it is six valid fields."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("a scheduled trigger needs a cron expression (6 fields, seconds first)")
    text = " ".join(expression.split())
    if len(text.split(" ")) != 6:
        raise InvalidInput(f"cron {expression!r} must have 6 fields: second minute hour day month weekday")
    try:
        croniter(text, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), second_at_beginning=True).get_next(dt.datetime)
    except (ValueError, KeyError) as exc:
        raise InvalidInput(f"cron {expression!r} is not valid: {exc}") from exc
    return text


def next_after(expression: str, moment: dt.datetime) -> dt.datetime:
    """The first fire time strictly after `moment` (an aware datetime; the answer is in UTC)."""
    nxt: dt.datetime = croniter(expression, moment.astimezone(dt.UTC), second_at_beginning=True).get_next(
        dt.datetime
    )
    return nxt.astimezone(dt.UTC)
