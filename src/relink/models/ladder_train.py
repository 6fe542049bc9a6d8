"""Train a ladder of small open_clip models, weakly to strongly aligned (``relink train``).

One contrastive run (ClipLoss, AdamW, warmup then cosine) on the cohort's train split; its
checkpoints at increasing steps are the rungs. ``OUT`` holds ``rung-1``, ``rung-2``, ... (open_clip
checkpoint folders whose ``relink.json`` says what they were trained on) and ``ladder.json`` (the
run's *signature* and, per rung, its step, pairs seen and recent mean loss); :mod:`.ladder_store`
says how it is resumed.

Same seed, same machine -> identical weights (fp32 on CPU; bfloat16 autocast on a GPU). Real cohorts
are fine-tuned with open_clip's own trainer; :func:`export_training_csv` writes the CSV it reads.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..cohort import Cohort, fingerprint, read_cohort, refuse_output_over_cohort
from .trained_on import private as private_rows
from ..errors import RelinkError
from ..io import atomic_path, claim_output, write_json
from ..options import number
from .device import resolve_device
from .ladder_store import LADDER_FILE, OWNER, STATE_FILE, LadderStore, read_ladder

__all__ = ["train_ladder", "read_ladder", "rung_steps", "lr_at", "export_training_csv", "LADDER_FILE", "STATE_FILE"]
AUGMENT = {"max_shift": 2, "jitter": 0.0}  # see relink.models.train_data.augment


def rung_steps(total_steps: int, rungs: int = 3, ratio: float = 3.0) -> list[int]:
    """Geometrically spaced save steps ending at ``total_steps`` (T/9, T/3, T for 3 rungs); evenly
    spaced when too few steps for distinct geometric ones."""
    if rungs < 1:
        raise RelinkError("--rungs must be >= 1")
    if total_steps < rungs:
        raise RelinkError(f"{total_steps} training step(s) cannot make {rungs} distinct rungs; add pairs or epochs")
    steps = sorted({max(1, round(total_steps / ratio ** (rungs - 1 - k))) for k in range(rungs)})
    if len(steps) < rungs:
        steps = sorted({max(1, round(total_steps * (k + 1) / rungs)) for k in range(rungs)})
    return steps


def lr_at(step: int, base_lr: float, warmup: int, total: int) -> float:
    """Linear warmup to ``base_lr`` over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def _param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    # As open_clip's trainer: no weight decay on gains, biases, norms and the temperature.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _fused_ok(dev: str) -> bool:
    # One fused kernel instead of a dozen per-tensor ops per step: ~1.4x faster steps on CPU.
    import torch

    return dev.startswith("cuda") or tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)


def _train_rows(cohort: Cohort, split: str, max_pairs: int | None, seed: int) -> np.ndarray:
    rows = np.flatnonzero(cohort.frame["split"].to_numpy() == split)
    if len(rows) == 0:
        have = ", ".join(sorted(map(str, cohort.frame["split"].unique())))
        raise RelinkError(f"{cohort.manifest}: no rows with split == {split!r} to train on (--split; "
                          f"the cohort has {have or 'no rows'})")
    if max_pairs is not None and max_pairs < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_pairs, replace=False))
    return rows


def train_ladder(cohort, config: str = "relink-vit-tiny", out_dir: str | Path = "ladder", epochs: int = 3,
                 batch_size: int = 128, lr: float = 5e-4, weight_decay: float = 0.1, warmup: int | None = None,
                 seed: int = 0, save_at: Sequence[int] | None = None, rungs: int = 3, max_pairs: int | None = None,
                 device: str = "auto", augment: bool = True, split: str = "train", overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Train ``config`` (a model spec: an architecture name for a seeded random init, or weights) on
    the ``split`` rows of ``cohort``; save rungs at ``save_at`` steps (default :func:`rung_steps`).
    ``warmup`` defaults to 5% of the steps. Returns ``out_dir``."""
    import torch

    from .checkpoint import save_checkpoint
    from .preprocess import input_size
    from .registry import load_model
    from .train_data import load_pairs

    out_dir = claim_output(out_dir, kind="dir", owner=OWNER, overwrite=overwrite)
    epochs = number("--epochs", epochs, int, 1)
    batch_size = number("--batch-size", batch_size, int, 1)
    lr = number("--lr", lr, float, 0, low_open=True)
    weight_decay = number("--weight-decay", weight_decay, float, 0)
    warmup = None if warmup is None else number("--warmup", warmup, int, 0)
    seed = number("--seed", seed, int, 0, 2**63 - 1)
    rungs = number("--rungs", rungs, int, 1)
    max_pairs = None if max_pairs is None else number("--max-pairs", max_pairs, int, 1)
    save_at = None if save_at is None else [number("--save-at", s, int, 1) for s in save_at]
    cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
    refuse_output_over_cohort(out_dir, cohort)
    dev = resolve_device(device)
    rows = _train_rows(cohort, split, max_pairs, seed)
    n = len(rows)
    per_epoch = max(1, n // batch_size)  # full batches only: ClipLoss compares within a batch
    total = per_epoch * epochs
    steps = sorted(set(int(s) for s in save_at)) if save_at else rung_steps(total, rungs)
    if steps[0] < 1 or steps[-1] > total:
        raise RelinkError(f"--save-at steps must lie in 1..{total} ({n} pairs, batch {batch_size}, {epochs} epoch(s))")
    warmup = max(1, round(0.05 * steps[-1])) if warmup is None else warmup
    signature = {
        "config": config, "cohort_fingerprint": fingerprint(cohort), "split": split, "pairs": n,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "warmup": warmup,
        "seed": seed, "save_at": steps, "augment": AUGMENT if augment else None, "max_pairs": max_pairs,
        "precision": "amp-bf16" if dev.startswith("cuda") else "fp32",
    }
    # What every rung saw, whatever it started from: a DP run on these rows reads it to refuse a release
    # (relink.models.trained_on); only a fingerprint of the pair ids, never the rows.
    trained_on = private_rows(cohort.frame["pair_id"].to_numpy()[rows])
    store = LadderStore(out_dir, signature, overwrite)
    if store.finished:
        print(f"relink train: {out_dir} already holds this ladder ({len(steps)} rungs); nothing to do", file=sys.stderr)
        return out_dir

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        lm = load_model(config, device="cpu")
    model = lm.model.to(dev).train()
    files = [str(cohort.image_root / cohort.frame["image_path"].iat[i]) for i in rows]
    t0 = time.perf_counter()
    pairs = load_pairs(files, cohort.frame["report"].to_numpy()[rows], rows, lm.preprocess, lm.tokenizer,
                       cohort.frame["pair_id"].to_numpy()[rows], input_size(lm.preprocess_cfg))
    load_s = time.perf_counter() - t0
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6,
                                  fused=_fused_ok(dev))
    done = store.done()
    store.start(done)
    work = store.work
    try:
        start = _resume(work, done[-1], model, optimizer, dev) if done else 0
        ladder = {"signature": store.signature, "trained_on": trained_on, "rungs": done,
                  "data_load_seconds": round(load_s, 2)}

        def save_rung(step: int, loss: float, seconds: float) -> None:
            name = f"rung-{steps.index(step) + 1}"
            info = {"name": name, "step": step, "pairs_seen": step * min(batch_size, n),
                    "epochs_seen": round(step / per_epoch, 3), "loss": round(loss, 5), "train_seconds": round(seconds, 2)}
            save_checkpoint(model, work / name, lm.model_cfg, lm.preprocess_cfg,
                            extra={"signature": signature, "trained_on": trained_on, **info})
            with atomic_path(work / STATE_FILE) as tmp:
                torch.save({"step": step, "optimizer": optimizer.state_dict(), "signature": signature}, tmp)
            ladder["rungs"].append(info)
            ladder["complete"] = len(ladder["rungs"]) == len(steps)
            store.write_ladder(ladder)

        _loop(model, optimizer, pairs, lm.preprocess_cfg, dev, signature, per_epoch, start, steps, save_rung, progress)
    except RelinkError:  # bad input: remove the work folder this run created (an interrupt keeps it)
        store.discard()
        raise
    return store.finish()


def _resume(work: Path, last: dict[str, Any], model, optimizer, dev: str) -> int:
    import torch
    from safetensors.torch import load_file

    from .checkpoint import WEIGHTS_FILE

    state = torch.load(work / STATE_FILE, map_location=dev, weights_only=True)
    if state["step"] != last["step"]:
        raise RelinkError(f"{work / STATE_FILE} is at step {state['step']}, not at {last['name']}; "
                          f"remove {work} to train afresh")
    model.load_state_dict(load_file(str(work / last["name"] / WEIGHTS_FILE), device=str(dev)))
    optimizer.load_state_dict(state["optimizer"])
    print(f"relink train: resuming after {last['name']} (step {last['step']})", file=sys.stderr)
    return int(state["step"])


def _loop(model, optimizer, pairs, preprocess_cfg, dev: str, sig: dict[str, Any], per_epoch: int, start: int,
          steps: list[int], save_rung, progress: bool) -> None:
    import torch
    from open_clip.loss import ClipLoss
    from tqdm.auto import tqdm

    from .preprocess import normalise
    from .train_data import augment, epoch_order, step_generator

    images, tokens = pairs.images.to(dev), pairs.tokens.to(dev)
    n, bs, seed = len(pairs), min(sig["batch_size"], len(pairs)), sig["seed"]
    mean, std = preprocess_cfg["mean"], preprocess_cfg["std"]
    loss_fn = ClipLoss()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda") else contextlib.nullcontext()
    bar = tqdm(total=steps[-1], initial=start, desc="train", unit="step", disable=None if progress else True)
    t0, losses, order, order_epoch = time.perf_counter(), [], None, -1
    try:
        for step in range(start, steps[-1]):
            epoch, pos = divmod(step, per_epoch)
            if epoch != order_epoch:
                order, order_epoch = torch.from_numpy(epoch_order(n, seed, epoch)).to(dev), epoch
            idx = order[pos * bs:(pos + 1) * bs]
            x = images[idx]
            if sig["augment"]:
                x = augment(x, step_generator(seed, step, dev), **sig["augment"])
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, sig["lr"], sig["warmup"], steps[-1])
            with amp:
                img = model.encode_image(normalise(x, mean, std), normalize=True)
                txt = model.encode_text(tokens[idx], normalize=True)
                loss = loss_fn(img, txt, model.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # as open_clip's trainer: temperature at most 100
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            if step + 1 in steps:
                recent = losses[-max(1, per_epoch):]
                save_rung(step + 1, float(np.mean(recent)), time.perf_counter() - t0)
    finally:
        bar.close()


def export_training_csv(cohort, out_csv: str | Path, split: str | None = "train",
                        img_key: str = "filepath", caption_key: str = "title") -> Path:
    """Write the tab-separated CSV ``open_clip_train`` reads (its default column names): absolute
    image paths and reports on one line each (``split=None``: every row). A provenance side file marks
    it as relink's, so a re-export may replace it."""
    cohort = cohort if isinstance(cohort, Cohort) else read_cohort(cohort)
    frame = cohort.frame if split is None else cohort.frame[cohort.frame["split"] == split]
    if frame.empty:
        raise RelinkError(f"{cohort.manifest}: no rows with split == {split!r} to export")
    import pandas as pd

    root = cohort.image_root.resolve()
    table = pd.DataFrame({
        img_key: [str(root / p) for p in frame["image_path"]],
        caption_key: [re.sub(r"\s+", " ", str(t)).strip() for t in frame["report"]],
    })
    out_csv = Path(out_csv)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    write_json(out_csv.with_name(out_csv.name + ".provenance.json"),
               {"command": OWNER, "what": "open_clip_train CSV", "split": split, "rows": len(table),
                "cohort_fingerprint": fingerprint(cohort)})
    return out_csv
