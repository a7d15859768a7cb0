"""Helpers shared by benchmarks/seed_sweep.py and benchmarks/compare.py (trusted code).

Pure functions (no GPU needed): loading a kernel file, a CONFIG with overrides, TFLOP/s,
geometric means, a fixed-width table and a self-contained SVG bar chart (matplotlib is not
a dependency).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from html import escape
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` without an install
    sys.path.insert(0, str(REPO))

PEER_NAMES = {"cudnn": "SDPA-cuDNN", "flash": "SDPA-flash", "flex": "FlexAttention"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


class KernelFileError(ValueError):
    """A kernel file is missing or does not define attention()."""


def load_kernel(path: str | Path, label: str | None = None) -> ModuleType:
    """Import a candidate file as a fresh module (trusted user files only)."""
    path = Path(path)
    if not path.is_file():
        raise KernelFileError(f"kernel file not found: {path}")
    name = "kernel_" + re.sub(r"\W", "_", label or path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise KernelFileError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "attention", None)):
        raise KernelFileError(f"{path} defines no attention() function")
    return module


def with_overrides(config: dict, overrides: dict) -> dict:
    """A copy of a kernel's CONFIG with ``overrides`` applied; in a per-class CONFIG a class
    given as a dict is merged knob by knob (``{"D128_NC": {"PINGPONG": 1}}`` keeps the
    class's other knobs), anything else replaces the entry."""
    new = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(new.get(key), dict):
            new[key].update(value)
        else:
            new[key] = value
    return new


def tflops(flops: float, ms: float | None) -> float | None:
    if ms is None or not ms > 0:
        return None
    return flops / (ms * 1e-3) / 1e12


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain fixed-width text table (first column left aligned, the rest right aligned)."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]

    def line(cells):
        out = [str(cells[0]).ljust(widths[0])]
        out += [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(out)

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def svg_bar_chart(title: str, groups: list[str], series: dict[str, list[float | None]],
                  y_label: str = "TFLOP/s") -> str:
    """Grouped bar chart as a standalone SVG document: one group per shape, one bar per series."""
    n_series = max(1, len(series))
    bar_w = 10
    group_w = n_series * bar_w + 14
    left, top, plot_h, bottom = 60, 40, 300, 150
    width = left + max(1, len(groups)) * group_w + 180
    height = top + plot_h + bottom
    values = [v for vals in series.values() for v in vals if v is not None]
    vmax = max(values) if values else 1.0
    step = 10 ** math.floor(math.log10(vmax)) if vmax > 0 else 1.0
    ymax = math.ceil(vmax / step) * step if vmax > 0 else 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14">{escape(title)}</text>',
             f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})">'
             f'{escape(y_label)}</text>']
    for i in range(6):  # horizontal grid with labels
        val = ymax * i / 5
        y = top + plot_h - plot_h * i / 5
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 170}" y2="{y:.1f}" '
                     f'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{val:g}</text>')
    for g, group in enumerate(groups):
        x0 = left + g * group_w + 7
        for s, (name, vals) in enumerate(series.items()):
            v = vals[g] if g < len(vals) else None
            if v is None:
                continue
            h = plot_h * v / ymax
            parts.append(f'<rect x="{x0 + s * bar_w}" y="{top + plot_h - h:.1f}" width="{bar_w - 1}" '
                         f'height="{h:.1f}" fill="{_PALETTE[s % len(_PALETTE)]}">'
                         f'<title>{escape(name)} {escape(group)}: {v:.1f}</title></rect>')
        lx, ly = x0 + n_series * bar_w / 2, top + plot_h + 8
        parts.append(f'<text x="{lx:.1f}" y="{ly}" transform="rotate(60 {lx:.1f} {ly})">'
                     f'{escape(group)}</text>')
    for s, name in enumerate(series):
        y = top + 14 * s
        parts.append(f'<rect x="{width - 160}" y="{y}" width="10" height="10" '
                     f'fill="{_PALETTE[s % len(_PALETTE)]}"/>')
        parts.append(f'<text x="{width - 145}" y="{y + 9}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
