"""Small data for the `relink report` tests (no tests here): hand-made EmbeddingSets with known alignment.

* :func:`write_set` — an EmbeddingSet folder in the hand-written format:
  patients of 1-4 studies, 14 labels, image rows Gaussian and text rows either
  independent of them (no signal: lift 1 by construction) or the image plus
  noise (strong signal);
* :func:`fake_mitigated` — a folder laid out as `relink mitigate` writes it
  (privacy.json, embeddings/<name>/ with ``heads`` in meta.json) holding a
  noisier version of a set, for before/after checks without training;
* :func:`check_document` — a reader's check of a ``relink-report/2`` document;
* :func:`main` — the real CLI in-process (``relink.cli.main``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from relink import cli
from relink.labels import CHEXPERT_LABELS

PREVALENCE = (0.3, 0.05, 0.12, 0.03, 0.2, 0.1, 0.05, 0.04, 0.1, 0.02, 0.15, 0.01, 0.02, 0.25)
META = {"format_version": 1, "model": "hand-made-vit", "weights_fingerprint": "feedface00000001",
        "cohort_fingerprint": "c0ffee0000000001"}


def check_document(doc) -> None:
    """Raise :class:`RelinkError` unless ``doc`` reads as a ``relink-report/2`` document (a reader's first check)."""
    from relink.errors import RelinkError
    from relink.report.schema import KEYS, SCHEMA

    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RelinkError(f"not a {SCHEMA} document")
    missing = [k for k in KEYS if k not in doc]
    if missing:
        raise RelinkError(f"{SCHEMA} document lacks {', '.join(missing)}")


def main(argv: list[str]) -> int:
    """``relink.cli.main``: the real command line, in-process."""
    return cli.main(argv)


def patients(n: int, rng) -> np.ndarray:
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 5)))
    return np.repeat(np.arange(len(sizes)), sizes)[:n]


def arrays(n: int, d: int, noise: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n, d)).astype(np.float32)
    text = rng.normal(size=(n, d)) if noise is None else image + noise * rng.normal(size=(n, d))
    return image, text.astype(np.float32)


def rows_frame(n: int, seed: int = 0, pair_fmt: str = "pair{:05d}", patient_fmt: str = "pat{:05d}",
               labels: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 1000)
    pid = patients(n, rng)
    rows = pd.DataFrame({"pair_id": [pair_fmt.format(i) for i in range(n)],
                         "patient_id": [patient_fmt.format(p) for p in pid],
                         "study_id": [pair_fmt.format(i) + "-st" for i in range(n)],
                         "cohort": "handmade", "split": np.where(np.arange(n) % 5 == 0, "validate", "test")})
    if labels:
        for j, name in enumerate(CHEXPERT_LABELS):
            rows[name] = (rng.random(n) < PREVALENCE[j]).astype(float)
    return rows


def write_set(folder: Path, n: int = 400, d: int = 32, noise: float | None = None, seed: int = 0,
              rows: pd.DataFrame | None = None, meta: dict | None = None, **row_kwargs) -> Path:
    """``noise=None``: text independent of image; else text = image + noise * N(0, 1)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    image, text = arrays(n, d, noise, seed)
    (rows if rows is not None else rows_frame(n, seed, **row_kwargs)).to_parquet(folder / "rows.parquet", index=False)
    np.save(folder / "image.npy", image)
    np.save(folder / "text.npy", text)
    (folder / "meta.json").write_text(json.dumps(META if meta is None else meta))
    return folder


def fake_mitigated(folder: Path, audited: Path, noise: float, privacy: dict | None = None, heads: dict | None = None,
                   meta: dict | None = None, seed: int = 7, name: str = "internal") -> Path:
    """A `relink mitigate`-shaped output whose set re-uses ``audited``'s rows with text = image + more noise."""
    folder = Path(folder)
    sub = folder / "embeddings" / name
    sub.mkdir(parents=True)
    rows = pd.read_parquet(audited / "rows.parquet")
    image = np.load(audited / "image.npy")
    rng = np.random.default_rng(seed)
    text = image + noise * rng.normal(size=image.shape)
    rows.to_parquet(sub / "rows.parquet", index=False)
    np.save(sub / "image.npy", image.astype(np.float32))
    np.save(sub / "text.npy", text.astype(np.float32))
    base = json.loads((audited / "meta.json").read_text())
    heads = heads if heads is not None else {"fingerprint": "0123456789abcdef", "base_model": base.get("model"),
                                             "base_weights_fingerprint": base.get("weights_fingerprint")}
    m = {**base, "model": "checkpoint", "weights_fingerprint": "beadbead00000002", "heads": heads, **(meta or {})}
    (sub / "meta.json").write_text(json.dumps(m))
    p = {"private": True, "epsilon": 0.34, "delta": 6e-6, "accountant": "prv", "rdp_epsilon": 0.61,
         "noise_multiplier": 3.1, "privacy_unit": "patient", "noise_seed": "secret", "for_release": True}
    (folder / "privacy.json").write_text(json.dumps(p if privacy is None else privacy))
    return folder


def run(args: list[str], capsys) -> tuple[int, str, str]:
    """The real console script in-process: (exit status, stdout, stderr); argparse's own exit counts too."""
    try:
        rc = cli.main(["report", *args])
    except SystemExit as exc:  # a bad option, refused by argparse as the console script would
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def report_args(emb: Path, out: Path, *extra: str, pool: int = 100, boot: int = 100) -> list[str]:
    return ["--embeddings", str(emb), "--out", str(out), "--attacker-pool", str(pool), "--bootstrap", str(boot),
            *extra]


def same_json(a, b, rtol: float = 1e-9, atol: float = 1e-8) -> bool:
    """Equal JSON values, numbers within ``np.isclose(rtol, atol)`` (0, 0: exactly), NaN equal to NaN."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_json(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_json(x, y, rtol, atol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return a == b or (np.isnan(a) and np.isnan(b)) or bool(np.isclose(a, b, rtol=rtol, atol=atol))
    return a == b
