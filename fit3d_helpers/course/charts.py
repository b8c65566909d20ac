"""The paper's numbers drawn as inline SVG bar charts for the slides (offline, no library, text ≥ 16 px at 1:1).

A chart is small multiples: one panel per dataset or setting, one bar per variant, each bar labelled with its value,
the axis from zero (so a small difference looks small). Every number comes from :mod:`fit3d_helpers.course.paper`;
the caller passes them in. The SVG is drawn at its display size (``width`` × ``height`` px, no scaling), so the font
sizes here are the sizes on a 1280×720 slide.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Bar", "Panel", "bar_chart"]

COLORS = {"original": "#9aa5b1", "FiT3D": "#1b6fd8", "other": "#c9a227"}
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\""


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: no number (a note is drawn instead)
    color: str = COLORS["other"]
    note: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    bars: Sequence[Bar]
    footer: str = ""  # e.g. "Δ +2.57"
    digits: int | None = None  # decimals of this panel's values (else the chart's)


def _t(x: float, y: float, text: str, size: int = 16, anchor: str = "middle", weight: str = "400", fill: str = "#222"):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} font-size="{size}" font-weight="{weight}" '
        f'fill="{fill}">{html.escape(text)}</text>'
    )


def bar_chart(
    panels: Sequence[Panel],
    *,
    width: int,
    height: int,
    digits: int = 2,
    label: str = "",
    scale_max: float | None = None,
) -> str:
    """``panels`` side by side in ``width`` × ``height`` px; each panel's axis from 0 to its own max (or
    ``scale_max``). Values are printed on the bars with ``digits`` decimals."""
    n = max(len(panels), 1)
    pw = width / n
    top, bottom = 34, 58  # panel title above, bar labels + footer below
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(label)}">'
    ]
    for i, p in enumerate(panels):
        x0 = i * pw
        parts.append(_t(x0 + pw / 2, 22, p.title, 18, weight="600"))
        vals = [b.value for b in p.bars if b.value is not None]
        vmax = scale_max or (max(vals) * 1.18 if vals else 1.0)
        h_avail = height - top - bottom - 22  # room for the value label above a bar
        k = len(p.bars)
        bw = min(64.0, (pw - 24) / max(k, 1) - 10)
        gap = (pw - k * bw) / (k + 1)
        base = height - bottom
        parts.append(
            f'<line x1="{x0 + 8:.1f}" y1="{base}" x2="{x0 + pw - 8:.1f}" y2="{base}" stroke="#555" stroke-width="1.5"/>'
        )
        for j, b in enumerate(p.bars):
            bx = x0 + gap + j * (bw + gap)
            if b.value is None:
                parts.append(_t(bx + bw / 2, base - 30, b.note or "—", 16, fill="#8a1c1c"))
            else:
                bh = max(1.0, h_avail * b.value / vmax)
                parts.append(
                    f'<rect x="{bx:.1f}" y="{base - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="{b.color}"/>'
                )
                dg = digits if p.digits is None else p.digits
                parts.append(_t(bx + bw / 2, base - bh - 6, f"{b.value:.{dg}f}", 16, weight="600"))
            parts.append(_t(bx + bw / 2, base + 20, b.label, 16))
        if p.footer:
            parts.append(_t(x0 + pw / 2, base + 44, p.footer, 16, fill="#333"))
    parts.append("</svg>")
    return "".join(parts)
