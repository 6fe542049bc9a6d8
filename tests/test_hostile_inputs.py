"""Hostile input, as a new user would try it: every case through the real command line.

Each case builds its bad input in a fresh folder, runs ``relink ...``
in-process (``relink.cli.main``), and checks what the project promises:

* exit status 2 and exactly one line on stderr, ``relink CMD: error: ...``,
  naming the culprit (the option, the file or the row) and never its content;
* no ``Traceback``;
* nothing left behind and nothing changed: every file that existed before
  (the case's own folder and the shared inputs) is byte-identical afterwards,
  and no new file or folder appeared.

Kills and read-only folders need real processes: they are in
tests/test_guard.py and tests/commands/test_mitigate.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from helpers.official import build_mimic, build_plus, default_plus_images
from helpers.sets import tiny_model_set
from relink.cli import main

SECRET = "the patient mentioned a very private family matter"


@dataclass(frozen=True)
class World:
    root: Path
    model: Path
    emb: Path
    synth: Path
    mimic_images: Path
    mimic_reports: Path
    plus: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    ckpt, emb_dir = tiny_model_set(60)
    model, emb = root / "model", root / "emb"
    shutil.copytree(ckpt, model)
    shutil.copytree(emb_dir, emb)
    assert main(["synth", "--out", str(root / "synth"), "--patients", "10", "--seed", "3", "--size", "32"]) == 0
    images, reports = build_mimic(root)
    plus = build_plus(root)
    return World(root, model, emb, root / "synth", images, reports, plus)


def snapshot(*folders: Path) -> dict[str, str]:
    """Every path under ``folders``: a folder, a link (and where it points) or a file's bytes."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            key = str(p)
            if p.is_symlink():
                out[key] = "link -> " + os.readlink(p)
            else:
                out[key] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------- set-ups


def copy_emb(w: World, s: Path, name: str = "emb") -> Path:
    return Path(shutil.copytree(w.emb, s / name))


def edit_rows(folder: Path, fn) -> None:
    rows = pd.read_parquet(folder / "rows.parquet")
    fn(rows).to_parquet(folder / "rows.parquet", index=False)


def edit_array(folder: Path, name: str, fn) -> None:
    arr = np.load(folder / f"{name}.npy")
    np.save(folder / f"{name}.npy", fn(arr))


def nan_row(arr, row=5):
    arr = arr.copy()
    arr[row, 1] = np.nan
    return arr


def zero_row(arr, row=5):
    arr = arr.copy()
    arr[row] = 0
    return arr


def copy_synth(w: World, s: Path, edit=None) -> Path:
    folder = Path(shutil.copytree(w.synth, s / "cohort"))
    if edit is not None:
        frame = pd.read_parquet(folder / "cohort.parquet")
        import pyarrow.parquet as pq

        meta = pq.read_schema(folder / "cohort.parquet").metadata
        frame = edit(frame, folder)
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), folder / "cohort.parquet")
    return folder


def first_image(folder: Path) -> Path:
    frame = pd.read_parquet(folder / "cohort.parquet")
    return folder / frame["image_path"].iat[2]


def model_without_weights(w: World, s: Path) -> Path:
    folder = Path(shutil.copytree(w.model, s / "model"))
    for f in folder.iterdir():
        if f.suffix in (".bin", ".pt", ".safetensors", ".pth"):
            f.unlink()
    return folder


def panel_with(w: World, s: Path, edit) -> Path:
    """A second set for an attacker panel: the world's set with its rows edited (arrays cut to match)."""
    folder = copy_emb(w, s, "public")
    rows = pd.read_parquet(folder / "rows.parquet")
    kept = edit(rows)
    kept.reset_index(drop=True).to_parquet(folder / "rows.parquet", index=False)
    for f in folder.glob("*.npy"):
        np.save(f, np.load(f)[: len(kept)] if len(kept) < len(rows) else np.load(f))
    return folder


def plus_with_text_label(w: World, s: Path) -> Path:
    root = build_plus(s)
    f = root / "chexbert_labels" / "impression_fixed.json"
    lines = [json.loads(x) for x in f.read_text().splitlines()]
    lines[0]["Edema"] = SECRET
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def mimic_with_bad_report(w: World, s: Path) -> tuple[Path, Path]:
    images, reports = build_mimic(s)
    report = sorted(reports.rglob("*.txt"))[0]
    report.write_bytes(b"\xff\xfe FINDINGS: \x80\x81 broken bytes\n")
    return images, reports


# ------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[World, Path], list[str]]
    expect: tuple[str, ...]  # substrings of the one error line (the culprit named)
    secret: str | None = None  # content that must NOT appear in any output
    env: tuple[tuple[str, str], ...] = ()  # the environment of the case (a torchrun launch's variables)
    fixed_on: str | None = None  # the branch that fixes a case owned by another helper (xfail until merged)


def out_folder_with(name: str, content: str = "my thesis\n"):
    def make(s: Path) -> Path:
        (s / "out").mkdir()
        (s / "out" / name).write_text(content)
        return s / "out"
    return make


def user_file(s: Path, name: str) -> Path:
    (s / name).write_text("do not touch\n")
    return s / name


E = lambda w: str(w.emb)  # noqa: E731
MIT = ["--epsilon", "1", "--delta", "1e-3", "--epochs", "1"]

CASES = [
    # --- outputs that are not ours, or not what they should be
    Case("mitigate-out-foreign-folder",
         lambda w, s: ["mitigate", "--embeddings", E(w), *MIT, "--out", str(out_folder_with("thesis.tex")(s))],
         ("--out", "not a relink mitigate output")),
    Case("mitigate-out-existing-file",
         lambda w, s: ["mitigate", "--embeddings", E(w), *MIT, "--out", str(user_file(s, "dp"))], ("--out", "is a file")),
    Case("cohort-out-foreign-file",
         lambda w, s: ["cohort", "mimic-cxr", "--images", str(w.mimic_images), "--reports", str(w.mimic_reports),
                       "--out", str(user_file(s, "notes.parquet"))], ("notes.parquet",)),
    Case("cohort-out-wrong-kind",
         lambda w, s: ["cohort", "mimic-cxr", "--images", str(w.mimic_images), "--reports", str(w.mimic_reports),
                       "--out", str(user_file(s, "notes.txt"))], ("notes.txt",)),
    Case("audit-out-is-a-folder",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str((s / "a.csv").mkdir() or s / "a.csv")],
         ("a.csv", "is a folder")),
    Case("audit-out-foreign-table",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str(user_file(s, "results.csv"))],
         ("results.csv", "not a relink audit output")),
    Case("embed-out-foreign-folder",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(w.model), "--out",
                       str(out_folder_with("notes.md")(s))], ("--out",)),
    Case("probe-out-foreign", lambda w, s: ["probe", "--embeddings", E(w), "--out", str(user_file(s, "p.json"))],
         ("p.json", "not a relink probe output")),
    Case("neighbors-out-foreign", lambda w, s: ["neighbors", "--embeddings", E(w), "--out", str(user_file(s, "n.csv"))],
         ("n.csv", "not a relink neighbors output")),
    Case("report-out-foreign",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--out", str(user_file(s, "r.html"))],
         ("r.html", "not a relink report output")),
    Case("report-out-and-json-same-file",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--out", str(s / "r.html"),
                       "--json", str(s / "r.html")], ("--json",)),
    Case("synth-out-foreign-folder",
         lambda w, s: ["synth", "--out", str(out_folder_with("data.csv")(s)), "--patients", "2", "--seed", "0"],
         ("--out",)),
    Case("train-out-foreign-folder",
         lambda w, s: ["train", "--cohort", str(w.synth), "--out", str(out_folder_with("keep.txt")(s))], ("--out",)),
    Case("out-under-a-file",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str(user_file(s, "plain") / "a.csv")], ("plain",)),
    # --- models that do not load as asked
    Case("model-folder-without-weights",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(model_without_weights(w, s)), "--out",
                       str(s / "e")], ("model",)),
    Case("model-unknown-name",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", "ViT-Q-99", "--out", str(s / "e")],
         ("ViT-Q-99",)),
    Case("model-garbage-weights-file",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model",
                       f"relink-vit-tiny:{user_file(s, 'weights.pt')}", "--out", str(s / "e")], ("weights.pt",)),
    Case("model-checkpoint-of-another-architecture",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model",
                       f"relink-timm-tiny:{next(p for p in w.model.iterdir() if p.suffix in ('.bin', '.safetensors', '.pt'))}",
                       "--out", str(s / "e")], ("does not fit",)),
    # --- numeric options: finite, in range, named by their flag (--tie-tol: the audit's command tests)
    *[Case(f"audit-{flag.strip('-')}-{value}", lambda w, s, f=flag, v=value: ["audit", "--embeddings", E(w), f, v,
                                                                               "--out", str(s / "a.csv")], (flag,))
      for flag, value in [("--bootstrap", "-1"),
                          ("--k", "0"), ("--ci", "2"), ("--pools", "abc"), ("--k", "1.5"), ("--monte-carlo", "-3")]],
    Case("audit-pool-larger-than-the-set",
         lambda w, s: ["audit", "--embeddings", E(w), "--pools", "100000", "--out", str(s / "a.csv")],
         ("N=100000", "--pools-clip")),
    Case("audit-k-larger-than-a-pool",
         lambda w, s: ["audit", "--embeddings", E(w), "--pools", "10", "--k", "50", "--out", str(s / "a.csv")],
         ("K=50",)),
    *[Case(f"mitigate-{flag.strip('-')}-{value}",
           lambda w, s, f=flag, v=value: ["mitigate", "--embeddings", E(w), "--epsilon", "1", "--delta", "1e-3",
                                          f, v, "--out", str(s / "dp")], (flag,))
      for flag, value in [("--bank-size", "0"), ("--bank-size", "-5"), ("--epsilon", "1e6"), ("--epsilon", "nan"),
                          ("--epsilon", "-1"), ("--delta", "2"), ("--lr", "-1"), ("--temperature", "0"),
                          ("--epochs", "0"), ("--clip-norm", "inf"), ("--batch-size", "0")]],
    Case("embed-batch-size-0",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(w.model), "--batch-size", "0", "--out",
                       str(s / "e")], ("--batch-size",)),
    Case("train-epochs-0", lambda w, s: ["train", "--cohort", str(w.synth), "--epochs", "0", "--out", str(s / "l")],
         ("--epochs",)),
    Case("train-lr-nan", lambda w, s: ["train", "--cohort", str(w.synth), "--lr", "nan", "--out", str(s / "l")],
         ("--lr",)),
    Case("synth-patients-0", lambda w, s: ["synth", "--out", str(s / "c"), "--patients", "0", "--seed", "0"],
         ("--patients",)),
    Case("synth-size-7", lambda w, s: ["synth", "--out", str(s / "c"), "--patients", "2", "--seed", "0", "--size", "7"],
         ("--size",)),
    Case("neighbors-k-0", lambda w, s: ["neighbors", "--embeddings", E(w), "--k", "0", "--out", str(s / "n.csv")],
         ("--k",)),
    Case("probe-member-gap-negative",
         lambda w, s: ["probe", "--embeddings", E(w), "--member-gap", "-1", "--out", str(s / "p.csv")],
         ("--member-gap",)),
    Case("report-pool-larger-than-the-set",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "100000", "--out", str(s / "r.html")],
         ("--attacker-pool",)),
    Case("report-released-0",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--released", "0", "--out",
                       str(s / "r.html")], ("--released",)),
    Case("report-thresholds-out-of-order",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--lift-elevated", "20",
                       "--lift-high", "10", "--out", str(s / "r.html")], ("--lift-elevated", "out of order")),
    Case("paper-unreadable-override", lambda w, s: ["paper", "--profile", "smoke", "--set", "n_boot=abc", "--no-book"],
         ("n_boot",)),
    Case("paper-unknown-profile", lambda w, s: ["paper", "--profile", "nope"], ("nope",)),
    Case("paper-unknown-chapter", lambda w, s: ["paper", "--profile", "smoke", "--chapters", "99"], ("99",)),
    # --- bad data: named by file and row, never by content
    Case("manifest-label-is-text",
         lambda w, s: ["embed", "--cohort", str(copy_synth(w, s, lambda f, d: f.assign(
             Edema=f["Edema"].astype(str).where(f.index != 3, SECRET)))), "--model", str(w.model), "--out", str(s / "e")],
         ("row 3", "Edema", "text"), secret=SECRET),
    Case("chexpert-label-cell-is-free-text",
         lambda w, s: ["cohort", "chexpert-plus", "--root", str(plus_with_text_label(w, s)), "--out", str(s / "c.parquet")],
         ("Edema",), secret=SECRET),
    Case("image-missing",
         lambda w, s: ["embed", "--cohort", str(copy_synth(w, s, lambda f, d: (first_image(d).unlink(), f)[1])),
                       "--model", str(w.model), "--out", str(s / "e")], ("row 2",)),
    Case("image-corrupt",
         lambda w, s: ["embed", "--cohort", str(copy_synth(w, s, lambda f, d: (first_image(d).write_bytes(b"\x89PNG junk"), f)[1])),
                       "--model", str(w.model), "--out", str(s / "e")], ("row 2",)),
    Case("image-zero-bytes",
         lambda w, s: ["embed", "--cohort", str(copy_synth(w, s, lambda f, d: (first_image(d).write_bytes(b""), f)[1])),
                       "--model", str(w.model), "--out", str(s / "e")], ("row 2",)),
    Case("image-path-escapes-the-root",
         lambda w, s: ["embed", "--cohort", str(copy_synth(w, s, lambda f, d: f.assign(
             image_path=f["image_path"].where(f.index != 4, "../../etc/passwd")))), "--model", str(w.model),
                       "--out", str(s / "e")], ("row 4", "image_path")),
    Case("report-not-utf8",
         lambda w, s: ["cohort", "mimic-cxr", *sum(zip(("--images", "--reports"), map(str, mimic_with_bad_report(w, s))), ()),
                       "--out", str(s / "c.parquet")], (".txt",)),
    Case("embeddings-missing", lambda w, s: ["audit", "--embeddings", str(s / "nowhere"), "--out", str(s / "a.csv")],
         ("nowhere",)),
    Case("embeddings-misaligned",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_array(d, "image", lambda a: a[:-3]), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "a.csv")], ("image.npy", "misaligned")),
    Case("embeddings-nan-row",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_array(d, "text", nan_row), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "a.csv")], ("text.npy row 5", "non-finite")),
    Case("embeddings-zero-norm-row",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_array(d, "image", zero_row), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "a.csv")], ("image.npy row 5", "zero norm")),
    Case("embeddings-without-patient-id",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_rows(d, lambda r: r.drop(columns=["patient_id"])), d)[1])(
             copy_emb(w, s))), "--out", str(s / "a.csv")], ("rows.parquet", "patient_id")),
    Case("embeddings-duplicate-pair-id",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_rows(d, lambda r: r.assign(
             pair_id=r["pair_id"].where(r.index != 7, r["pair_id"].iat[2]))), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "a.csv")], ("row 7", "pair_id")),
    Case("embeddings-meta-not-json",
         lambda w, s: ["audit", "--embeddings", str((lambda d: ((d / "meta.json").write_text("{oops"), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "a.csv")], ("meta.json",)),
    Case("embeddings-label-is-text",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_rows(d, lambda r: r.assign(
             Edema=r["Edema"].astype(str).where(r.index != 6, SECRET))), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "a.csv")], ("row 6", "Edema"), secret=SECRET),
    Case("audit-split-that-does-not-exist",
         lambda w, s: ["audit", "--embeddings", E(w), "--split", "holdout", "--out", str(s / "a.csv")], ("holdout",)),
    Case("hard-negatives-without-labels",
         lambda w, s: ["audit", "--embeddings", str((lambda d: (edit_rows(d, lambda r: r.drop(
             columns=[c for c in r.columns if c[0].isupper()])), d)[1])(copy_emb(w, s))), "--hard-negatives",
                       "--pools", "10,full", "--out", str(s / "a.csv")], ("label",)),
    Case("mitigate-bank-overlaps-private-rows",
         lambda w, s: ["mitigate", "--embeddings", E(w), "--bank", E(w), *MIT, "--out", str(s / "dp")], ("bank",)),
    Case("mitigate-without-trunks",
         lambda w, s: ["mitigate", "--embeddings", str((lambda d: ((d / "image_trunk.npy").unlink(), d)[1])(copy_emb(w, s))),
                       *MIT, "--out", str(s / "dp")], ("trunk",)),
    Case("mitigate-nan-in-private-trunk",
         lambda w, s: ["mitigate", "--embeddings", str((lambda d: (edit_array(d, "image_trunk", nan_row), d)[1])(
             copy_emb(w, s))), *MIT, "--out", str(s / "dp")], ("image_trunk.npy row 5",)),
    Case("probe-split-shares-a-patient",
         lambda w, s: ["probe", "--embeddings", str((lambda d: (edit_rows(d, lambda r: r.assign(
             split=np.where(np.arange(len(r)) % 2 == 0, "train", "test"))), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "p.csv")], ("patient",)),
    Case("report-mitigated-folder-missing",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--mitigated", str(s / "dp"),
                       "--out", str(s / "r.html")], ("--mitigated",)),
    Case("neighbors-without-text",
         lambda w, s: ["neighbors", "--embeddings", str((lambda d: ((d / "text.npy").unlink(), d)[1])(copy_emb(w, s))),
                       "--out", str(s / "n.csv")], ("text.npy",)),
]


# ------------------------------------------------------------- issue 23: outputs, launches, odd inputs


def link(s: Path, name: str, target: Path) -> Path:
    (s / name).symlink_to(target)
    return s / name


def emb_in(s: Path, w: World, parent: str) -> Path:
    """A copy of the set at ``s/parent/emb`` (an output folder that would hold an input)."""
    (s / parent).mkdir()
    return copy_emb(w, s / parent)


def mitigated_with(w: World, s: Path, **fields) -> Path:
    """A real `relink mitigate` output whose privacy.json then has ``fields`` replaced."""
    assert main(["mitigate", "--embeddings", E(w), *MIT, "--accountant", "rdp", "--reproducible-noise", "0",
                 "--out", str(s / "dp")]) == 0
    record = json.loads((s / "dp" / "privacy.json").read_text())
    (s / "dp" / "privacy.json").write_text(json.dumps({**record, **fields}))
    return s / "dp"


LAUNCH = (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511"))


def launch(**changes) -> tuple[tuple[str, str], ...]:
    """A one-process torchrun environment with ``changes`` (``None`` removes a variable)."""
    env = dict(LAUNCH)
    env.update(changes)
    return tuple((k, v) for k, v in env.items() if v is not None)


AUDIT_DIST = lambda w, s: ["audit", "--distributed", "--embeddings", E(w), "--out", str(s / "a.csv")]  # noqa: E731

CASES += [
    # --- 1-3: an output never lands on a file nobody named, nor on an input (whatever --overwrite says)
    Case("audit-side-file-is-the-users",
         lambda w, s: (user_file(s, "a.csv.provenance.json"), ["audit", "--embeddings", E(w), "--out", str(s / "a.csv")])[1],
         ("a.csv.provenance.json", "not a relink audit output")),
    Case("audit-side-file-is-a-link-to-the-users-file",
         lambda w, s: (link(s, "a.csv.provenance.json", user_file(s, "mine.json")),
                       ["audit", "--embeddings", E(w), "--out", str(s / "a.csv")])[1],
         ("a.csv.provenance.json", "symbolic link")),
    Case("audit-out-is-a-link-to-the-users-file",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str(link(s, "a.json", user_file(s, "mine.json")))],
         ("a.json", "symbolic link")),
    Case("audit-out-is-the-embeddings-rows",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str(w.emb / "rows.parquet"), "--overwrite"],
         ("--out", "--embeddings", "even with --overwrite")),
    Case("audit-out-inside-the-embeddings",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str(w.emb / "audit.csv"), "--overwrite"],
         ("--out", "lies inside", "--embeddings")),
    Case("audit-out-reaches-the-embeddings-through-a-link",
         lambda w, s: ["audit", "--embeddings", E(w), "--out", str(link(s, "e", w.emb) / "rows.parquet"), "--overwrite"],
         ("--out", "--embeddings")),
    Case("report-audit-is-the-embeddings-rows",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--audit", str(w.emb / "rows.parquet"),
                       "--out", str(s / "r.html"), "--overwrite"], ("--audit", "--embeddings")),
    Case("report-json-inside-the-mitigated-folder",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--mitigated",
                       str(out_folder_with("privacy.json", "{}")(s)), "--json", str(s / "out" / "privacy.json"),
                       "--out", str(s / "r.html"), "--overwrite"], ("--json", "--mitigated")),
    Case("neighbors-out-is-the-embeddings-meta",
         lambda w, s: ["neighbors", "--embeddings", E(w), "--out", str(w.emb / "meta.json"), "--overwrite"],
         ("--out", "--embeddings")),
    Case("probe-out-inside-the-embeddings",
         lambda w, s: ["probe", "--embeddings", E(w), "--out", str(w.emb / "p.csv"), "--overwrite"],
         ("--out", "--embeddings")),
    Case("mitigate-out-holds-the-embeddings",
         lambda w, s: ["mitigate", "--embeddings", str(emb_in(s, w, "dp")), *MIT, "--out", str(s / "dp"), "--overwrite"],
         ("--out", "holds", "--embeddings")),
    Case("mitigate-out-is-the-bank",
         lambda w, s: ["mitigate", "--embeddings", E(w), "--bank", str(copy_emb(w, s, "bank")), *MIT,
                       "--out", str(s / "bank"), "--overwrite"], ("--out", "--bank")),
    Case("embed-out-inside-the-cohort",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(w.model), "--out", str(w.synth / "emb"),
                       "--overwrite"], ("--out", "--cohort")),
    Case("embed-out-is-the-model",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(w.model), "--out", str(w.model),
                       "--overwrite"], ("--out", "--model")),
    Case("cohort-out-inside-the-images",
         lambda w, s: ["cohort", "mimic-cxr", "--images", str(w.mimic_images), "--reports", str(w.mimic_reports),
                       "--out", str(w.mimic_images / "c.parquet"), "--overwrite"], ("--out", "--images")),
    Case("train-export-csv-is-the-cohort-manifest",
         lambda w, s: ["train", "--cohort", str(w.synth), "--export-csv", str(w.synth / "cohort.parquet"),
                       "--overwrite"], ("--export-csv", "--cohort")),
    Case("audit-work-folder-is-the-users",
         lambda w, s: (out_folder_with("notes.md")(s).rename(s / "a.csv.work"),
                       ["audit", "--embeddings", E(w), "--out", str(s / "a.csv")])[1], ("a.csv.work", "work folder")),
    Case("paper-artifacts-inside-the-dataset",
         lambda w, s: ["paper", "--profile", "mimic", "--artifacts", str(w.mimic_images / "artifacts"), "--no-book"],
         ("--artifacts", "RELINK_MIMIC_IMAGES"),
         env=(("RELINK_MIMIC_IMAGES", "{images}"), ("RELINK_MIMIC_REPORTS", "{reports}"))),
    # --- 6: a distributed launch checked before the process group is joined
    Case("audit-distributed-without-master-addr", AUDIT_DIST, ("MASTER_ADDR",), env=launch(MASTER_ADDR=None)),
    Case("audit-distributed-rank-not-a-number", AUDIT_DIST, ("RANK='abc'",), env=launch(RANK="abc")),
    Case("audit-distributed-rank-beyond-the-world", AUDIT_DIST, ("RANK",), env=launch(RANK="2", WORLD_SIZE="2")),
    Case("audit-distributed-world-size-0", AUDIT_DIST, ("WORLD_SIZE",), env=launch(WORLD_SIZE="0")),
    Case("audit-distributed-without-local-rank", AUDIT_DIST, ("LOCAL_RANK",), env=launch(LOCAL_RANK=None)),
    Case("audit-distributed-port-out-of-range", AUDIT_DIST, ("MASTER_PORT",), env=launch(MASTER_PORT="99999")),
    Case("audit-distributed-unknown-host", AUDIT_DIST, ("MASTER_ADDR",), env=launch(MASTER_ADDR="no-such-host.invalid")),
    Case("embed-distributed-without-master-port",
         lambda w, s: ["embed", "--distributed", "--cohort", str(w.synth), "--model", str(w.model), "--out", str(s / "e")],
         ("MASTER_PORT",), env=launch(MASTER_PORT=None)),
    Case("audit-timeout-0", lambda w, s: [*AUDIT_DIST(w, s), "--timeout", "0"], ("--timeout",)),
    # --- 3, 8, 9: sizes with bounds; an input given twice; a request larger than the data
    Case("probe-same-embeddings-twice", lambda w, s: ["probe", "--embeddings", E(w), E(w), "--out", str(s / "p.csv")],
         ("--embeddings", "twice")),
    Case("probe-same-embeddings-twice-through-a-link",
         lambda w, s: ["probe", "--embeddings", E(w), str(link(s, "same", w.emb)), "--out", str(s / "p.csv")],
         ("--embeddings", "twice")),
    Case("report-same-mitigated-twice",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--mitigated", str(s / "dp"),
                       "--mitigated", str(s / "dp"), "--out", str(s / "r.html")], ("--mitigated", "twice")),
    Case("mitigate-same-apply-twice",
         lambda w, s: ["mitigate", "--embeddings", E(w), "--apply", str(copy_emb(w, s, "ext")), "--apply",
                       str(s / "ext"), *MIT, "--out", str(s / "dp")], ("--apply", "twice")),
    Case("probe-member-gap-larger-than-the-set",
         lambda w, s: ["probe", "--embeddings", E(w), "--features", "projected", "--member-gap", "100000",
                       "--out", str(s / "p.csv")], ("--member-gap 100000",)),
    Case("probe-member-gap-1", lambda w, s: ["probe", "--embeddings", E(w), "--member-gap", "1", "--out", str(s / "p.csv")],
         ("--member-gap",)),
    Case("probe-seed-beyond-32-bits",
         lambda w, s: ["probe", "--embeddings", E(w), "--seed", str(2**40), "--out", str(s / "p.csv")], ("--seed",)),
    Case("neighbors-k-larger-than-the-set",
         lambda w, s: ["neighbors", "--embeddings", E(w), "--k", "500", "--out", str(s / "n.csv")], ("--k 500",)),
    Case("synth-patients-a-billion",
         lambda w, s: ["synth", "--out", str(s / "c"), "--patients", "1000000000", "--seed", "0"], ("--patients",)),
    Case("synth-size-huge",
         lambda w, s: ["synth", "--out", str(s / "c"), "--patients", "2", "--seed", "0", "--size", "100000"], ("--size",)),
    Case("synth-seed-negative",
         lambda w, s: ["synth", "--out", str(s / "c"), "--patients", "2", "--seed", "-1"], ("--seed",)),
    Case("embed-batch-size-huge",
         lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(w.model), "--batch-size", "10000000",
                       "--out", str(s / "e")], ("--batch-size",)),
    Case("report-panel-of-other-rows",
         lambda w, s: ["report", "--embeddings", E(w), str(panel_with(w, s, lambda r: r.assign(
             pair_id=r["pair_id"].where(r.index != 3, SECRET)))), "--split", "all", "--attacker-pool", "20",
             "--out", str(s / "r.html")], ("--embeddings", "not the same rows", "row 4"), secret=SECRET),
    Case("report-panel-of-fewer-rows",
         lambda w, s: ["report", "--embeddings", E(w), str(panel_with(w, s, lambda r: r.iloc[1:])), "--split", "all",
                       "--attacker-pool", "20", "--out", str(s / "r.html")], ("--embeddings", "not the same rows")),
    Case("report-panel-same-set-twice",
         lambda w, s: ["report", "--embeddings", E(w), E(w), "--split", "all", "--attacker-pool", "20",
                       "--out", str(s / "r.html")], ("--embeddings", "twice")),
    # --- owned by other helpers: rows here, fixed on their branches (flip after the merge)
    Case("report-mitigated-epsilon-is-a-string",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--mitigated",
                       str(mitigated_with(w, s, epsilon="inf")), "--out", str(s / "r.html")],
         ("privacy.json", "epsilon")),
    Case("report-released-beyond-any-cohort",
         lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--released", str(10**30),
                       "--out", str(s / "r.html")], ("--released",)),
    Case("mitigate-apply-is-the-embeddings",
         lambda w, s: ["mitigate", "--embeddings", E(w), "--apply", E(w), *MIT, "--out", str(s / "dp")],
         ("--apply",)),
]


PYTHON_ARGUMENT = re.compile(r"\b[a-z]+_[a-z_]+=(True|False|None|\d)")  # pools_clip=True: errors name flags only


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(reason=f"fixed on branch {c.fixed_on}", strict=False)] if c.fixed_on else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input_is_one_clear_line_and_changes_nothing(case, world, tmp_path, capsys, monkeypatch):
    scratch = tmp_path / "case"
    scratch.mkdir()
    for name, _ in LAUNCH:
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env:
        monkeypatch.setenv(name, value.format(images=world.mimic_images, reports=world.mimic_reports))
    argv = case.argv(world, scratch)
    capsys.readouterr()  # what a set-up printed is not the case's output
    before = snapshot(world.root, scratch)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    command = argv[0]
    assert code == 2, (code, out[-500:], err[-2000:])
    assert "Traceback" not in err + out
    assert len(lines) == 1 and lines[0].startswith(f"relink {command}: error: "), err
    for needle in case.expect:
        assert needle in lines[0], (needle, lines[0])
    assert not PYTHON_ARGUMENT.search(lines[0]), lines[0]
    if case.secret:
        assert case.secret not in err + out and "family" not in err + out, lines[0]
    assert snapshot(world.root, scratch) == before, "a file was written, changed or left behind"


def test_the_corpus_is_wide():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# ------------------------------------------------------------- a user's file at every side-file path


SIDE_FILES = [  # (command, argv writing OUT into s, the side paths it writes beside OUT, relative to s)
    ("audit", lambda w, s: ["audit", "--embeddings", E(w), "--pools", "10,full", "--bootstrap", "0",
                            "--out", str(s / "a.csv")], ("a.csv.provenance.json", "a.csv.work")),
    ("neighbors", lambda w, s: ["neighbors", "--embeddings", E(w), "--k", "3", "--out", str(s / "n.csv")],
     ("n.csv.provenance.json",)),
    ("probe", lambda w, s: ["probe", "--embeddings", E(w), "--out", str(s / "p.csv")], ("p.csv.provenance.json",)),
    ("report", lambda w, s: ["report", "--embeddings", E(w), "--split", "all", "--attacker-pool", "20", "--audit", str(s / "t.csv"),
                             "--out", str(s / "r.html")], ("t.csv.provenance.json",)),
    ("train", lambda w, s: ["train", "--cohort", str(w.synth), "--export-csv", str(s / "t.tsv")],
     ("t.tsv.provenance.json",)),
    ("train", lambda w, s: ["train", "--cohort", str(w.synth), "--out", str(s / "ladder")], ("ladder.work",)),
    ("embed", lambda w, s: ["embed", "--cohort", str(w.synth), "--model", str(w.model), "--out", str(s / "e")],
     ("e.work",)),
]


def _occupy(s: Path, side: str, how: str) -> None:
    """Put the user's own thing at ``s/side``: a file, a link to a file of theirs, or a folder of theirs."""
    if how == "file":
        user_file(s, side)
    elif how == "link":
        (s / side).symlink_to(user_file(s, "mine.txt"))
    else:
        (s / side).mkdir()
        (s / side / "notes.md").write_text("do not touch\n")


@pytest.mark.parametrize("how", ["file", "link", "folder"])
@pytest.mark.parametrize("command, argv, sides", SIDE_FILES,
                         ids=[f"{c}-{'-'.join(sides)}" for c, _, sides in SIDE_FILES])
def test_a_users_file_at_a_side_file_path_is_never_touched(world, tmp_path, capsys, command, argv, sides, how):
    for side in sides:
        s = tmp_path / side.replace(".", "_") / how
        s.mkdir(parents=True)
        _occupy(s, side, how)
        args = argv(world, s)
        capsys.readouterr()
        before = snapshot(world.root, s)
        code = main(args)
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2, (side, how, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"relink {command}: error: ") and side in lines[0], lines
        assert snapshot(world.root, s) == before, (side, how)


def test_with_overwrite_a_link_at_a_side_file_is_replaced_never_followed(world, tmp_path, capsys):
    """--overwrite replaces the link itself; the file it pointed to is untouched. A work folder that is not
    relink's is refused even then (it would be emptied)."""
    mine = user_file(tmp_path, "mine.json")
    side = tmp_path / "a.csv.provenance.json"
    side.symlink_to(mine)
    assert main(["audit", "--embeddings", E(world), "--pools", "10,full", "--bootstrap", "0", "--out",
                 str(tmp_path / "a.csv"), "--overwrite"]) == 0
    assert not side.is_symlink() and json.loads(side.read_text())["command"] == "audit"
    assert mine.read_text() == "do not touch\n"
    # what the table wrote is exactly what its guard declared: the table and its side file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.csv.provenance.json", "mine.json"]
    out_folder_with("notes.md")(tmp_path).rename(tmp_path / "b.csv.work")
    capsys.readouterr()
    assert main(["audit", "--embeddings", E(world), "--out", str(tmp_path / "b.csv"), "--overwrite"]) == 2
    assert "b.csv.work" in capsys.readouterr().err
    assert (tmp_path / "b.csv.work" / "notes.md").read_text() == "my thesis\n"


# ------------------------------------------------------------- small and odd sets (report: branch i18)


def subset_emb(w: World, s: Path, keep) -> Path:
    """A copy of the set holding only the rows ``keep(rows)`` selects."""
    folder = copy_emb(w, s, "small")
    rows = pd.read_parquet(folder / "rows.parquet")
    idx = np.flatnonzero(keep(rows))
    rows.iloc[idx].reset_index(drop=True).to_parquet(folder / "rows.parquet", index=False)
    for f in folder.glob("*.npy"):
        np.save(f, np.load(f)[idx])
    return folder


SMALL_SETS = {
    "two-rows": lambda r: np.arange(len(r)) < 2,
    "one-patient": lambda r: (r["patient_id"] == r["patient_id"].iat[0]).to_numpy(),
}


@pytest.mark.parametrize("extra, keep", [(["--attacker-pool", "2", "--top-k", "1"], "two-rows"),
                                         (["--attacker-pool", "2", "--top-k", "1"], "one-patient"),
                                         (["--attacker-pool", "20", "--min-cell", "100"], None)],
                         ids=["two-rows", "one-patient", "min-cell-100"])
def test_the_report_never_crashes_on_a_small_set(world, tmp_path, capsys, extra, keep):
    """Seen: "Data cannot be log-scaled" from the rank histogram, exit 1."""
    emb = subset_emb(world, tmp_path, SMALL_SETS[keep]) if keep else world.emb
    code = main(["report", "--embeddings", str(emb), *extra, "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "internal error" not in err, err[-2000:]


def test_an_interval_resting_on_one_patient_is_not_printed(world, tmp_path):
    emb = subset_emb(world, tmp_path, SMALL_SETS["one-patient"])
    code = main(["audit", "--embeddings", str(emb), "--pools", "full", "--k", "1", "--bootstrap", "200",
                 "--out", str(tmp_path / "a.csv")])
    assert code == 0
    table = pd.read_csv(tmp_path / "a.csv")
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all(), table[["metric", "value", "ci_low", "ci_high"]]
