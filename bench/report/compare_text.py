"""``bench compare``'s console text: the BD table, the per-rate-point table, paired intervals,
notes and the verdict lines (REGRESSION …). A BD row's reasons (why a BD value is undefined)
are numbered footnotes under the table and notes wrap at the console's 100 columns, so the tables
stay as narrow as their numbers; a verdict stays one line (CI logs grep for them)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.analysis.compare import Comparison
from bench.modes import REFERENCE_CODEC
from bench.report.console import CONSOLE_WIDTH as WIDTH


def _fmt(x: Any, spec: str) -> str:
    """A number in ``spec``; "–" for None or NaN; anything else as its text."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–" if x is None else str(x)
    return "–" if math.isnan(v) else format(v, spec)


def _wrap(text: str, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _paired_lines(paired: pd.DataFrame | None, metrics: pd.DataFrame, bootstrap: Mapping[str, Any] | None) -> list[str]:
    """Console lines of the paired table (``paired``), the Bjøntegaard intervals of ``metrics``
    and the bootstrap settings (``bootstrap``: level, seed)."""
    from tabulate import tabulate

    lines = []
    p = paired
    if p is not None and len(p) and bootstrap is not None:
        lines += ["", f"paired differences B − A over the same images ({bootstrap['level'] * 100:g} % "
                      f"bootstrap interval, seed {bootstrap['seed']}):"]
        rows = [[r.codec, r.metric, r.rate_a if r.rate_a == r.rate_b else f"{r.rate_a}→{r.rate_b}", r.n_images,
                 _fmt(r.value_a, ".4f"), _fmt(r.value_b, ".4f"), _fmt(r.delta, "+.4f"),
                 f"[{_fmt(r.delta_lo, '+.4f')}, {_fmt(r.delta_hi, '+.4f')}]", "yes" if r.significant else "no"]
                for r in p.itertuples()]
        lines.append(tabulate(rows, headers=["codec", "metric", "rate A→B", "N", "A", "B", "Δ", "interval", "≠ 0"],
                              tablefmt="simple", disable_numparse=True))
    m = metrics
    if "significant" in m:
        rows = [[r.codec, r.metric, f"[{_fmt(r.bd_rate_lo, '+.2f')}, {_fmt(r.bd_rate_hi, '+.2f')}]",
                 f"[{_fmt(r.bd_metric_lo, '+.4f')}, {_fmt(r.bd_metric_hi, '+.4f')}]",
                 "–" if r.ci_images != r.ci_images else int(r.ci_images), r.basis, r.significant]
                for r in m.itertuples()]
        lines += ["", "Bjøntegaard intervals (images resampled, both curves recomputed):",
                  tabulate(rows, headers=["codec", "metric", "BD-rate % CI", "BD-metric CI", "N", "basis",
                                          "significant"], tablefmt="simple", disable_numparse=True)]
    return lines


def render_text(result: Comparison) -> str:
    """A console report: BD table (reasons as footnotes), per-rate-point table, notes and
    the regression verdict."""
    from tabulate import tabulate

    lines = [f"anchor (A): {result.run_a}", f"test   (B): {result.run_b}",
             "rate: " + ("paper formula where a codec has one (see notes)" if result.rate == "paper"
                         else "real bpp (transmitted bytes)"), ""]
    footnotes: dict[str, int] = {}  # reason -> its number, in order of first use

    def ref(reason: str) -> str:
        return f"[{footnotes.setdefault(reason, len(footnotes) + 1)}]" if reason else ""

    rows = [r for r in result.metrics.itertuples() if str(r.codec).split("@")[0] != REFERENCE_CODEC]
    table = [[r.codec, r.metric + (" ↑" if r.higher_is_better else " ↓"), f"{r.n_a}/{r.n_b}",
              _fmt(r.bd_rate_pct, "+.2f"), _fmt(r.bd_metric, "+.4f"), _fmt(r.quality_overlap, ".2f"),
              r.verdict, ref(r.notes)] for r in rows]
    lines.append(tabulate(table, headers=["codec", "metric", "points A/B", "BD-rate %", "BD-metric",
                                          "overlap", "verdict", "see"], tablefmt="simple", disable_numparse=True))
    if len(rows) < len(result.metrics):  # one rate point, no curve: its values are in the table below
        lines += _wrap(f"{REFERENCE_CODEC} (the clean reference, one rate point): no BD values; compared per "
                       "rate point below.")
    for reason, number in footnotes.items():
        lines += _wrap(f"[{number}] {reason}", " " * (len(str(number)) + 3))
    if len(result.points):
        lines += ["", "per rate point (B − A):"]
        pts = [[p.codec, p.metric, p.rate, _fmt(p.bpp_a, ".4f"), _fmt(p.bpp_b, ".4f"), _fmt(p.delta_bpp_pct, "+.2f"),
                _fmt(p.value_a, ".4f"), _fmt(p.value_b, ".4f"), _fmt(p.delta, "+.4f"), p.verdict]
               for p in result.points.itertuples()]
        lines.append(tabulate(pts, headers=["codec", "metric", "rate", "bpp A", "bpp B", "Δbpp %", "A", "B", "Δ",
                                            "verdict"], tablefmt="simple", disable_numparse=True))
    if result.paired is not None:
        lines += _paired_lines(result.paired, result.metrics, result.bootstrap)
    if result.notes:
        lines.append("")
        for note in result.notes:
            lines += _wrap(f"note: {note}", "      ")
    lines.append("")
    verdicts = ([f"REGRESSION: {r}" for r in result.regressions]
                or [f"no regression beyond tolerance (BD-rate {result.tolerance:g}%)"])
    if result.paired is not None:
        verdicts += [f"TOO FEW IMAGES: {r}" for r in result.too_few_images]
        verdicts += ([f"SIGNIFICANT REGRESSION: {r}" for r in result.significant_regressions]
                     or ["no significant regression (every worse-side interval includes 0)"])
    return "\n".join(lines + verdicts)  # one line per verdict, whatever its length: CI logs grep them
