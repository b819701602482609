"""The dashboard's colours against WCAG 2.1 AA, read from its stylesheet: every text colour
at least 4.5:1 on the page and on panels, in the light and the dark scheme."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (
    Path(__file__).parents[2] / "src" / "pipeline_core" / "ui" / "static" / "app.css"
).read_text()
TEXT = ["fg", "muted", "accent", "success", "failed", "running", "queued", "retry",
        "upstream", "skipped", "cancelled"]  # fmt: skip


def scheme(dark: bool) -> dict[str, str]:
    light = re.search(r":root \{(.*?)\n\}", CSS, re.S)
    assert light is not None
    block = light.group(1)
    if dark:
        found = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", CSS, re.S)
        assert found is not None
        block = found.group(1)
    return dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", block))


def luminance(colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("background", ["bg", "panel"])
def test_text_colours_meet_aa(dark: bool, background: str) -> None:
    colours = scheme(dark)
    for name in TEXT:
        ratio = contrast(colours[name], colours[background])
        assert ratio >= 4.5, (
            f"--{name} on --{background} ({'dark' if dark else 'light'}): {ratio:.2f}"
        )


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_text_on_filled_buttons_meets_aa(dark: bool) -> None:
    colours = scheme(dark)  # primary and pressed buttons draw --bg on a filled colour
    for fill in ("accent", "retry"):
        assert contrast(colours["bg"], colours[fill]) >= 4.5, fill
