"""Charts drawn on the server as SVG: the geometry here, the markup in `templates/charts.html`.
No script draws anything; every chart's numbers are also given as text for screen readers (the
templates add a table or a visually hidden list), and each SVG is one `role="img"` with a label.

Coordinates are in the SVG's own units (its `viewBox`); the SVG scales to the width it gets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Widths near the size they are shown at on a desktop (a half-width card), so that their text
# stays readable when a phone scales them down.
HBAR_WIDTH = 440
GROUPED_WIDTH = 560
ROW = 30  # one bar of a horizontal chart, with its gap
LABEL_WIDTH = 150  # the names left of the bars
VALUE_WIDTH = 76  # the value right of the longest bar
LABEL_CHARS = 20


def _short(text: str, chars: int = LABEL_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


@dataclass(frozen=True, slots=True)
class HBar:
    label: str  # in full (the bar's tooltip)
    short_label: str
    value_text: str
    y: float
    width: float
    text_y: float  # the baseline of its label and value


@dataclass(frozen=True, slots=True)
class HBarChart:
    width: int
    height: int
    label_width: int
    bars: list[HBar]


def hbar_chart(items: Sequence[tuple[str, int]], text: Callable[[int], str]) -> HBarChart:
    """A bar per (label, value), longest bar the largest value; `text` writes a value."""
    room = HBAR_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    top = max((value for _, value in items), default=0) or 1
    bars = [
        HBar(
            label,
            _short(label),
            text(value),
            y=i * ROW + 4,
            width=max(2.0, room * value / top) if value else 0.0,
            text_y=i * ROW + 4 + 15,
        )
        for i, (label, value) in enumerate(items)
    ]
    return HBarChart(HBAR_WIDTH, max(1, len(items)) * ROW + 4, LABEL_WIDTH, bars)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str  # the series' class (colour)
    title: str
    value: int


@dataclass(frozen=True, slots=True)
class Group:
    label: str
    label_x: float
    bars: list[Bar]


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class GroupedChart:
    width: int
    height: int
    left: int
    right: int
    baseline: float
    groups: list[Group]
    ticks: list[Tick]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str
    values: list[int]


def _step(top: int) -> int:
    """A round step for about four grid lines up to `top`: 1, 2, 5, 10, 20, 50, …"""
    rough = max(1.0, top / 4)
    power = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 5, 10):
        if factor * power >= rough:
            return int(factor * power)
    return int(10 * power)


def grouped_chart(
    labels: Sequence[str], series: Sequence[Series], *, names: Sequence[str] | None = None, height: int = 220
) -> GroupedChart:
    """Vertical bars grouped per label (a day), one per series (pushes, pulls); `names` are the
    groups in full for the bars' tooltips (the axis labels may be short)."""
    names = names if names is not None else labels
    left, right, top_pad, bottom = (
        40,
        GROUPED_WIDTH - 6,
        22,
        28,
    )  # the top leaves room for a value above the tallest bar
    baseline = height - bottom
    plot = baseline - top_pad
    top = max((v for s in series for v in s.values), default=0)
    step = _step(top)
    ceiling = max(step, math.ceil(top / step) * step)
    slot = (right - left) / max(1, len(labels))
    bar_width = slot * 0.7 / max(1, len(series))
    groups = []
    for i, label in enumerate(labels):
        start = left + i * slot + slot * 0.15
        bars = []
        for j, one in enumerate(series):
            value = one.values[i]
            tall = plot * value / ceiling
            title = f"{names[i]}: {value} {one.name}"
            bars.append(
                Bar(start + j * bar_width, baseline - tall, bar_width - 1, tall, one.css, title, value)
            )
        groups.append(Group(label, left + i * slot + slot / 2, bars))
    ticks = [Tick(baseline - plot * v / ceiling, str(v)) for v in range(0, ceiling + 1, step)]
    return GroupedChart(GROUPED_WIDTH, height, left, right, baseline, groups, ticks)
