"""Official-layout fixtures for the credentialed profiles, made with the command line a reviewer uses.

:func:`credentialed_data` (session scope) runs, in a temporary folder:

1. ``relink synth --layout mimic-cxr`` and ``relink synth --layout chexpert-plus``:
   synthetic releases in the exact on-disk layouts the loaders read, with the
   loaders' quirks and two canaries each — a distinctive patient id and an
   8-word phrase planted in a few reports;
2. ``relink cohort mimic-cxr`` / ``chexpert-plus``: the manifests the loaders
   make of them (the canaries are checked to be *in* them, so that finding
   them nowhere in the outputs means something);
3. ``relink train``: a ladder of three small local checkpoints
   (``relink-vit-tiny``) on the MIMIC-CXR fixture's training split, which
   both profiles audit (the study's ladder too is one set of models for both
   cohorts).

It returns the environment a paper run needs (``RELINK_MIMIC_IMAGES``,
``RELINK_MIMIC_REPORTS``, ``RELINK_CHEXPERT_PLUS_ROOT``, ``RELINK_LADDER``)
and, per profile, the ``--set`` overrides that size the run for the fixture:
pools, bootstrap, the epsilon sweep, DP epochs and, for the re-split, the
held-out size. The MIMIC-CXR pools include the exact size of its test split,
so that a cohort whose size equals a listed pool is exercised end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

RELINK = [sys.executable, "-m", "relink"]
SEED = 13
MIMIC_PATIENTS = 700  # ~1,800 studies, ~1,700 frontal pairs
PLUS_PATIENTS = 450  # ~1,200 studies, ~1,100 frontal pairs (every rung embeds all of them as the external cohort)
CANARY_PHRASE = "amber walrus counts seven quiet lanterns before dawn"
CANARY_IDS = {"mimic": "19999999", "chexpert-plus": "patient99999"}
TRAIN = ["--config", "relink-vit-tiny", "--epochs", "3", "--rungs", "3", "--batch-size", "64", "--quiet"]
# What every fixture profile sets: small pools and bootstrap, the headline private run and its non-private control
# (the sweep's other epsilons take the same code path; the smoke profile runs three).
COMMON = {"n_boot": "50", "epsilons": "0.34,none", "dp_epochs": "2", "dp_batch_size": "64", "embed_batch_size": "128"}
PLUS_HELDOUT = 500  # the chexpert-plus profile re-splits (split = study): a held-out set of at least this


@dataclass
class CredentialedData:
    root: Path
    env: dict[str, str]  # data and ladder variables for a paper run
    manifests: dict[str, Path]  # cohort name -> manifest written by `relink cohort`
    ladder: list[Path]
    seconds: dict[str, float] = field(default_factory=dict)  # how long each step took

    def overrides(self, profile: str) -> list[str]:
        """``--set`` arguments that size ``profile`` for the fixture."""
        sets = dict(COMMON)
        if profile == "mimic":
            test = pd.read_parquet(self.manifests["mimic"], columns=["split"])["split"].eq("test").sum()
            # the release's own split, and a pool exactly the size of its held-out part
            sets.update(split="official", pools=f"10,100,{int(test)},full")
        else:
            sets.update(split="study", pools="10,100,full", heldout_pairs=str(PLUS_HELDOUT))
        return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(RELINK + args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise AssertionError(f"relink {' '.join(args[:2])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def make_credentialed_data(root: Path) -> CredentialedData:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    seconds: dict[str, float] = {}

    def timed(name: str, args: list[str]) -> None:
        t0 = time.perf_counter()
        run(args, env)
        seconds[name] = round(time.perf_counter() - t0, 1)

    canary = ["--canary-phrase", CANARY_PHRASE, "--canary-reports", "3", "--workers", "2"]
    timed("synth mimic-cxr", ["synth", "--layout", "mimic-cxr", "--out", str(root / "mimic"), "--patients",
                              str(MIMIC_PATIENTS), "--seed", str(SEED), "--canary-patient", CANARY_IDS["mimic"], *canary])
    timed("synth chexpert-plus", ["synth", "--layout", "chexpert-plus", "--out", str(root / "plus"), "--patients",
                                  str(PLUS_PATIENTS), "--seed", str(SEED + 1), "--canary-patient",
                                  CANARY_IDS["chexpert-plus"], *canary])
    images, reports = root / "mimic" / "mimic-cxr-jpg", root / "mimic" / "mimic-cxr-reports"
    manifests = {"mimic": root / "mimic.parquet", "chexpert-plus": root / "plus.parquet"}
    timed("cohort mimic-cxr", ["cohort", "mimic-cxr", "--images", str(images), "--reports", str(reports),
                               "--out", str(manifests["mimic"])])
    timed("cohort chexpert-plus", ["cohort", "chexpert-plus", "--root", str(root / "plus"),
                                   "--out", str(manifests["chexpert-plus"])])
    timed("train ladder", ["train", "--cohort", str(manifests["mimic"]), "--out", str(root / "ladder"), *TRAIN])
    ladder = sorted((root / "ladder").glob("rung-*"), key=lambda p: int(p.name.split("-")[1]))
    env.update({
        "RELINK_MIMIC_IMAGES": str(images),
        "RELINK_MIMIC_REPORTS": str(reports),
        "RELINK_CHEXPERT_PLUS_ROOT": str(root / "plus"),
        "RELINK_LADDER": ",".join(f"{name}={path}" for name, path in zip(("weak", "middle", "strong"), ladder)),
    })
    return CredentialedData(root, env, manifests, ladder, seconds)


@pytest.fixture(scope="session")
def credentialed_data(tmp_path_factory) -> CredentialedData:
    data = make_credentialed_data(tmp_path_factory.mktemp("credentialed"))
    for name, path in data.manifests.items():  # the canaries are there to be missed
        frame = pd.read_parquet(path, columns=["patient_id", "report"])
        assert (frame["patient_id"].astype(str) == CANARY_IDS[name]).any(), name
        assert frame["report"].str.contains(CANARY_PHRASE, regex=False).sum() >= 3, name
    return data
