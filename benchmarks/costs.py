"""What the `mimic` profile's work costs on this machine: measured throughput, written to results/costs.json.

Measures, on the CPU, through the code paths `relink paper --profile mimic` runs:

1. embedding — `relink.embed.embed_cohort` with a ViT-B/16-size open_clip model
   (`ViT-B-16`, random weights: nothing is downloaded) on a small synthetic
   cohort: pairs (image + report, trunks kept) per second; and the model's
   FLOPs per pair, counted by torch's FLOP counter (for the GPU projection);
2. decoding — opening a JPEG of MIMIC-CXR-JPG's size (about 2,500 x 3,000
   pixels) and applying the model's preprocessing, per image and core: the
   work a GPU run waits on;
3. the exact audit — `relink.retrieval.audit` with the profile's settings for
   the `audit`, `hard_negatives` and DP-evaluation results, on random 512-d
   embeddings: seconds per query x candidate (pair²) without the bootstrap,
   and the bootstrap's seconds per query;
4. the DP sweep — `relink.dp.train.fit_heads` (Opacus, ghost clipping) on random
   trunk features of ViT-B/16's widths against a bank the size of the
   study's validation split: seconds per private pair and epoch (runs of one
   and three epochs: half their difference leaves the set-up out, which is
   timed apart), noise multiplier fixed, and the accountant's search for the
   study's schedule timed on its own.

The appendix (notebooks/08_costs.py, :mod:`relink.paper.costs`) scales these
rates by the study's sizes. Times vary with the machine's load: run it on a
quiet machine and read the ratios. Usage:

    python benchmarks/costs.py                 # writes benchmarks/results/costs.json
    python benchmarks/costs.py --quick         # smaller sizes, for a check of the script
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = "ViT-B-16"
MIMIC_JPEG_SIZE = (2544, 3056)  # width x height of a typical MIMIC-CXR-JPG image


def _clock(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def measure_embedding(pairs: int, batch_size: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from relink.cohort import read_cohort
    from relink.embed import embed_cohort
    from relink.models import load_model
    from relink.synth import generate_cohort

    lm = load_model(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_cohort(Path(tmp) / "cohort", max(1, pairs // 2), seed=0, size=224, progress=False)
        cohort = read_cohort(manifest)
        cohort = cohort.subset(np.arange(min(pairs, len(cohort.frame))))
        n = len(cohort.frame)
        seconds, out = _clock(embed_cohort, cohort, lm, Path(tmp) / "emb", batch_size=batch_size, device="cpu",
                              progress=False)
        arrays = {f.stem: np.load(f, mmap_mode="r").shape for f in Path(out).glob("*.npy")}
    image = torch.zeros(1, 3, 224, 224)
    tokens = lm.tokenizer(["a report"])
    flops = {}
    for name, call in (("image", lambda: lm.model.encode_image(image)), ("text", lambda: lm.model.encode_text(tokens))):
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            call()
        flops[name] = int(counter.get_total_flops())
    return {"model": MODEL, "pairs": n, "batch_size": batch_size, "seconds": round(seconds, 2),
            "pairs_per_s": n / seconds, "flops_per_pair": flops["image"] + flops["text"], "flops": flops,
            "bytes_per_pair": 4 * sum(shape[1] for shape in arrays.values()),
            "widths": {k: int(v[1]) for k, v in arrays.items()}}


def measure_decoding(images: int) -> dict:
    from PIL import Image

    from relink.models import load_model

    lm = load_model(MODEL)
    rng = np.random.default_rng(0)
    w, h = MIMIC_JPEG_SIZE
    # smooth content (as a radiograph) so the JPEG is of a realistic size, not noise
    small = rng.integers(0, 256, size=(h // 32, w // 32), dtype=np.uint8)
    picture = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "film.jpg"
        picture.save(path, quality=95)
        size = path.stat().st_size

        def once() -> None:
            with Image.open(path) as im:
                lm.preprocess(im.convert("RGB"))

        once()
        seconds, _ = _clock(lambda: [once() for _ in range(images)])
    return {"size": [w, h], "jpeg_bytes": size, "images": images, "seconds_per_image": seconds / images}


def _random_set(n: int, d: int, seed: int, trunk: tuple[int, int] | None = None):
    import pandas as pd

    from relink.embeddings import EmbeddingSet
    from relink.labels import CHEXPERT_LABELS

    rng = np.random.default_rng(seed)
    patients = rng.integers(0, max(1, n // 3), size=n)
    rows = pd.DataFrame({"pair_id": [f"q{i}" for i in range(n)], "patient_id": [f"p{p}" for p in patients]})
    groups = rng.integers(0, 8, size=n)  # a few label vectors, so matched pools fill
    for j, label in enumerate(CHEXPERT_LABELS):
        rows[label] = ((groups >> (j % 3)) & 1).astype(float)
    image, text = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    trunks = (rng.standard_normal((n, trunk[0])), rng.standard_normal((n, trunk[1]))) if trunk else (None, None)
    return EmbeddingSet.from_arrays(rows, image.astype(np.float32), text.astype(np.float32),
                                    *(None if t is None else t.astype(np.float32) for t in trunks))


def audit_specs(profile, n: int) -> dict:
    """The profile's three audits (as :mod:`relink.paper.results` runs them), pools clipped to ``n``."""
    from relink.retrieval.spec import AuditSpec

    base = AuditSpec(pools=profile.pools, ks=profile.ks, n_boot=profile.n_boot, random_state=0, pools_clip=True)
    return {
        "audit": base.but(levels=("study", "patient")),
        "hard_negatives": base.but(levels=("study",), negatives=("random", "pathology_matched", "positive_set_matched")),
        "dp_recall": base.but(ks=(1,), directions=("image_to_report",), levels=("study",), negatives=("random",)),
    }


def measure_audit(n: int, d: int) -> dict:
    from relink.paper.profiles import PROFILES
    from relink.retrieval.audit import audit

    es = _random_set(n, d, seed=1)
    out = {"candidates": n, "dim": d, "seconds": {}, "per_pair2": {}, "bootstrap_per_query": {}}
    for name, spec in audit_specs(PROFILES["mimic"], n).items():
        bare, _ = _clock(audit, es, spec.but(n_boot=0), model="m", cohort="c")
        full, _ = _clock(audit, es, spec, model="m", cohort="c")
        out["seconds"][name] = {"without_bootstrap": round(bare, 2), "with_bootstrap": round(full, 2)}
        out["per_pair2"][name] = bare / n**2
        out["bootstrap_per_query"][name] = max(0.0, full - bare) / n
    out["n_boot"] = PROFILES["mimic"].n_boot
    return out


def measure_dp(n_private: int, n_bank: int, widths: dict) -> dict:
    import dataclasses

    from relink.dp import accounting
    from relink.dp.spec import MitigationSpec
    from relink.dp.train import fit_heads
    from relink.models import load_model
    from relink.models.heads import extract_heads
    from relink.paper.costs import study_sizes
    from relink.paper.profiles import PROFILES

    p = PROFILES["mimic"]
    trunk = (widths["image_trunk"], widths["text_trunk"])
    train = _random_set(n_private, widths["image"], seed=2, trunk=trunk)
    bank = _random_set(n_bank, widths["image"], seed=3, trunk=trunk)
    bank = dataclasses.replace(bank, rows=bank.rows.assign(pair_id="b" + bank.rows["pair_id"],
                                                            patient_id="b" + bank.rows["patient_id"]))
    init = extract_heads(load_model(MODEL).model)
    spec = MitigationSpec(noise_multiplier=1.0, delta=p.delta, epochs=1, batch_size=p.dp_batch_size, lr=p.dp_lr,
                          clip_norm=p.dp_clip_norm, temperature=p.dp_temperature, privacy_unit=p.dp_privacy_unit,
                          reproducible_noise=0)
    # one epoch and three: half their difference is an epoch without the set-up (Opacus, the bank's
    # tensors); the least of two tries, as a shared machine only ever makes a run slower
    ones, threes = [], []
    for _ in range(2):
        ones.append(_clock(fit_heads, train, bank, init, spec, progress=False)[0])
        threes.append(_clock(fit_heads, train, bank, init, spec.but(epochs=3), progress=False)[0])
    one, three = min(ones), min(threes)
    epoch = max((three - one) / 2, 1e-9)
    # the accountant's sigma search for the study's schedule (pair units; patient units give fewer steps)
    study_train = study_sizes(p).train
    rate = accounting.sample_rate(study_train, p.dp_batch_size)
    steps = p.dp_epochs * accounting.steps_per_epoch(study_train, p.dp_batch_size)
    search, _ = _clock(accounting.noise_for, p.epsilon, p.delta, rate, steps, accountant=p.accountant)
    sizes = train.rows["patient_id"].value_counts()
    return {"private_pairs": n_private, "bank": n_bank, "batch_size": p.dp_batch_size, "privacy_unit": p.dp_privacy_unit,
            "patients": int(len(sizes)), "max_pairs_per_patient": int(sizes.max()),
            "seconds": {"one_epoch": [round(t, 2) for t in ones], "three_epochs": [round(t, 2) for t in threes]},
            "per_pair_epoch": epoch / n_private, "setup_seconds": max(0.0, one - epoch),
            "accountant": {"epsilon": p.epsilon, "steps": steps, "sample_rate": rate, "seconds": round(search, 2)}}


def measure_matmul(n: int = 4096, d: int = 512) -> float:
    """float32 GFLOP/s of one n x d x n product here (context for every other number)."""
    import torch

    a, b = torch.randn(n, d), torch.randn(d, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    seconds, _ = _clock(lambda: [torch.mm(a, b, out=out) for _ in range(3)])
    return 3 * 2 * n * n * d / seconds / 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the script, not the machine")
    ap.add_argument("--out", default=str(HERE / "results" / "costs.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    quick = args.quick
    t0 = time.perf_counter()
    result = {
        "measured": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "gpu": torch.cuda.is_available(),
                    "load_average_start": round(os.getloadavg()[0], 2)},  # a shared machine measures slower
        "matmul_gflops": measure_matmul(),
    }
    print(f"matmul: {result['matmul_gflops']:.0f} GFLOP/s", flush=True)
    result["embedding"] = measure_embedding(8 if quick else 32, 8 if quick else 16)
    print(f"embedding: {result['embedding']['pairs_per_s']:.2f} pairs/s", flush=True)
    result["decoding"] = measure_decoding(2 if quick else 8)
    print(f"decoding: {result['decoding']['seconds_per_image'] * 1000:.0f} ms/image", flush=True)
    result["audit"] = measure_audit(600 if quick else 3000, result["embedding"]["widths"]["image"])
    print(f"audit: {result['audit']['per_pair2']}", flush=True)
    from relink.paper.costs import study_sizes
    from relink.paper.profiles import PROFILES

    bank = study_sizes(PROFILES["mimic"]).bank  # the study's validation bank, as the DP step uses it
    result["dp"] = measure_dp(1024 if quick else 4096, bank, result["embedding"]["widths"])
    print(f"dp: {result['dp']['per_pair_epoch'] * 1e6:.1f} us per pair-epoch", flush=True)
    result["benchmark_seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out} in {result['benchmark_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
