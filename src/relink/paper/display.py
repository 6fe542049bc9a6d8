"""Tables as a reader sees them (:func:`show`): readable headers with units, no row index, and a missing
value as an em dash, never ``nan`` or ``None``."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

MISSING = "—"

#: column name -> header (with its unit where it has one)
HEADERS: dict[str, str] = {
    "cohort": "Cohort", "role": "Role", "split": "Split", "pairs": "Pairs", "studies": "Studies",
    "patients": "Patients", "model": "Model", "rung": "Rung", "pool": "Pool", "N": "Pool size N",
    "K": "K", "direction": "Direction", "level": "Level", "negatives": "Distractors",
    "recall_before_%": "Recall@1 before (%)", "recall_after_%": "Recall@1 after DP (%)",
    "relative_change_%": "Relative change (%)",
    "setting": "Run", "epsilon": "ε spent", "target_epsilon": "Target ε", "delta": "δ",
    "accountant": "Accountant", "prv_epsilon": "ε (PRV)", "rdp_epsilon": "ε (RDP)",
    "noise_multiplier": "Noise multiplier σ", "clip_norm": "Clip norm", "sample_rate": "Sample rate",
    "expected_batch_size": "Expected batch", "epochs": "Epochs", "steps": "Steps",
    "privacy_unit": "Privacy unit", "n_units": "Private units", "n_bank": "Bank pairs", "lr": "Learning rate",
    "temperature": "Temperature", "private": "Private", "for_release": "For release",
    "metric": "Metric", "features": "Features", "before": "Before", "dp": "After DP", "non_private": "Non-private",
    "random": "Random, all queries", "pathology_matched": "Pathology-matched", "positive_set_matched": "Positive-set-matched",
    "paired_random": "Random, same queries", "coverage_%": "Coverage (%)",
    "claim": "Claim", "study": "Study", "reproduced": "Reproduced", "measured as": "Measured as",
    "profile": "Profile", "verdict": "Verdict",
    "stage": "Stage", "work": "Work", "measured rate (this CPU)": "Measured rate (this CPU)",
    "one GPU (projection)": "One GPU (projection)",
}

#: cell value -> what a reader sees (enumerations only; numbers are formatted, not renamed)
VALUES: dict[str, str] = {
    "image_to_report": "image → report", "report_to_image": "report → image",
    "random": "random", "pathology_matched": "pathology-matched", "positive_set_matched": "positive-set-matched",
    "linear_probe_macro_auroc": "Linear-probe macro AUROC (%)", "zero_shot_macro_auroc": "Zero-shot macro AUROC (%)",
    "member_gap": "Member gap, Recall@1 (points)", "recall_members": "Recall@1, training members (%)",
    "recall_non_members": "Recall@1, held-out non-members (%)",
    "projected": "projected embedding", "trunk": "trunk features",
    "before": "before", "dp": "after DP", "non_private": "non-private",
}


def header(name: Any) -> str:
    """The header of a column (its own name when none is listed)."""
    return HEADERS.get(str(name), str(name))


def value(v: Any) -> Any:
    return VALUES.get(v, v) if isinstance(v, str) else v


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))


def _formatter(fmt: str | None):
    def fmt_one(v: Any) -> str:
        if _missing(v):
            return MISSING
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if fmt and isinstance(v, (int, float, np.integer, np.floating)):
            return format(v, fmt)
        if isinstance(v, (int, np.integer)):
            return f"{int(v):,}"
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.4g}"
        return str(value(v))

    return fmt_one


def readable(frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``frame`` with its index made columns (when named), every cell as display text and readable headers."""
    frame = frame.reset_index() if any(n is not None for n in frame.index.names) else frame.reset_index(drop=True)
    formats = dict(formats or {})
    out = pd.DataFrame({col: [_formatter(formats.get(str(col)))(v) for v in frame[col]] for col in frame.columns})
    out.columns = [_column_label(c) for c in frame.columns]
    return out


def _column_label(col: Any) -> str:
    if isinstance(col, tuple):  # a pivot's (value, key) columns: keep the parts that say something
        parts = [str(value(c)) for c in col if str(c) != ""]
        return ", ".join(header(p) if p in HEADERS else p for p in parts)
    return header(col)


def show(frame: pd.DataFrame, formats: Mapping[str, str] | None = None, caption: str | None = None, uid: str | None = None):
    """A pandas Styler of ``frame`` for the book: readable headers and values, no row index, no NaN."""
    text = readable(frame, formats)
    flat = frame.reset_index() if any(n is not None for n in frame.index.names) else frame
    numeric = [label for label, col in zip(text.columns, flat.columns) if pd.api.types.is_numeric_dtype(flat[col])
               and not pd.api.types.is_bool_dtype(flat[col])]
    style = text.style.hide(axis="index").set_properties(subset=numeric, **{"text-align": "right"})
    if uid:
        style = style.set_uuid(uid)  # stable HTML ids: an unchanged table renders the same page
    if caption:
        style = style.set_caption(caption)
    cell = [("padding", "0.25em 0.55em")]  # narrow enough for a seven-column table in the book's column
    return style.set_table_styles([{"selector": "th", "props": [("text-align", "left"), *cell]},
                                   {"selector": "td", "props": [("text-align", "left"), *cell]},
                                   {"selector": "caption", "props": [("caption-side", "top"), ("text-align", "left")]}])


class Prose(str):
    """A generated sentence to glue: plain text for ``{glue:text}`` (another page, in bold like every
    glued value) and Markdown for ``{glue:md}`` (its own page, as ordinary prose)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def prose(text: str) -> Prose:
    return Prose(text)


def framed(page: str, height: int = 900) -> str:
    """A standalone HTML page inside a chapter, in an ``iframe`` so that its stylesheet and the book's leave
    each other alone. No ``sandbox``: Chromium then draws a blank frame for a page with its own
    Content-Security-Policy (the report's forbids scripts and any request)."""
    import html

    # the book page sizes the frame to its content once loaded; ``height`` holds without scripts
    fit = "this.style.height=(this.contentDocument.documentElement.scrollHeight+2)+'px'"
    return (f'<div class="relink-framed"><iframe title="The custodian\'s report" '
            f'srcdoc="{html.escape(page, quote=True)}" onload="{fit}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ccc;border-radius:4px"></iframe></div>')
