"""The standalone HTML page, rendered with Jinja2 from the report record.

One file, nothing fetched (the page's Content-Security-Policy forbids every request besides inline styles and
``data:`` images), with ``<meta name="generator" content="relink report ...">`` in the first lines so
:func:`relink.io.output_owner` recognises it. Every string of the record is escaped; only the SVG figures of
:mod:`relink.report.figures` are inserted as markup.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from . import figures
from .risk import about

DIRECTIONS = {"image_to_report": "image \u2192 report", "report_to_image": "report \u2192 image"}


def _num(x: Any, digits: int = 3) -> str:
    """One precision style for the page: ``digits`` significant figures, trailing zeros kept (2.60, 0.0474),
    never an exponent (a "6e-06" breaks across lines and reads as a typo); whole numbers with separators."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    from .verdict import _plain

    return _plain(float(x), digits)


def _ci(pair: Any, kind: str = "num") -> str:
    """An interval as ``low–high``: ``kind`` num (3 significant digits), count (:func:`about`) or pct."""
    if not pair or any(v is None or not math.isfinite(v) for v in pair):
        return "n/a"
    f = {"count": about, "pct": _pct}.get(kind, _num)
    return f"{f(pair[0])}\u2013{f(pair[1])}"


def _pct(x: Any, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return _num(100 * float(x), digits) + "%"


def _ruled(x: Any, thresholds: dict[str, float], quantity: str) -> str:
    """A verdict quantity (``lift`` or ``excess``) as the rule printed it (:func:`relink.report.verdict.as_ruled`)."""
    from .verdict import as_ruled, rule_thresholds

    ts = rule_thresholds(thresholds)[quantity]
    if isinstance(x, (list, tuple)):
        return "n/a" if any(v is None or not math.isfinite(v) for v in x) else \
            "\u2013".join(as_ruled(v, ts) for v in x)
    return as_ruled(x, ts)


def apportion(values: Any) -> list[int]:
    """Whole numbers for expected counts that add up to their own rounded total (largest remainder): a
    column of counts never sums to more than the rows it counts."""
    xs = [max(float(v), 0.0) if v is not None and math.isfinite(v) else 0.0 for v in values]
    total = int(round(sum(xs)))
    floors = [int(math.floor(v)) for v in xs]
    rest = total - sum(floors)
    order = sorted(range(len(xs)), key=lambda i: (-(xs[i] - floors[i]), i))
    for i in order[:max(rest, 0)]:
        floors[i] += 1
    return floors


def _code(text: str):
    """Escape ``text`` and set `backticked` spans as code (recommendations name commands)."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


@functools.lru_cache(maxsize=1)
def environment():
    """The one Jinja2 environment (cached: the template compiled by :func:`warm_up` is the one rendered)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("relink.report", "templates"),
                      autoescape=select_autoescape(("html", "j2")), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, ci=_ci, pct=_pct, count=about, direction=lambda d: DIRECTIONS.get(d, d),
                       code=_code, ruled=_ruled, apportion=apportion)
    return env


def warm_up() -> None:
    """Import the plotting and templating stack, load the fonts, compile the template: run in a thread while the
    audit's score products run (torch releases the GIL), so the page costs little after it; a failure is left for
    :func:`render` to report."""
    try:
        from matplotlib.backends import backend_svg  # noqa: F401

        fig = figures._figure(1.0, 1.0)
        fig.subplots().set_title("warm")
        figures._svg(fig)
        environment().get_template("report.html.j2")
    except Exception:  # noqa: BLE001 - render() meets the same problem and says so
        pass


NOT_DRAWN = ('<p class="note">This figure cannot be drawn for an audit this small (too few queries or cells); '
             "the table beside it holds the numbers.</p>")


def _drawn(draw, *args):
    """A figure's SVG, or one sentence where the audit is too small to draw it (never a crash)."""
    try:
        return draw(*args)
    except (ValueError, ZeroDivisionError, IndexError):  # matplotlib's refusals of empty or degenerate data
        return NOT_DRAWN


def render(document: dict[str, Any]) -> str:
    """The page for a report document (:func:`relink.report.schema.document`)."""
    spec = document["settings"]["report"]
    pool = spec["attacker_pools"][0]
    conc = document["concentration"]
    figs = {
        "groups": _drawn(figures.group_lifts, conc, pool, document["verdict"]["thresholds"]),
        "ranks": _drawn(figures.rank_histogram, conc["rank_histogram"]) if conc["rank_histogram"] else None,
        "frontier": None,
        "curve": _drawn(figures.risk_against_n, document.get("risk_curve", {}).get("rows", []),
                        spec["attacker_pools"], document["threat_model"]["released"]),
    }
    runs = document["mitigation"]["runs"]
    if runs:
        before = document["headline"]
        figs["frontier"] = _drawn(figures.frontier, before, runs, pool)
    return environment().get_template("report.html.j2").render(doc=document, figs=figs, pool=pool, spec=spec)
