"""Small data for the DP and utility tests: toy trunk features with known structure, a tiny real model.

* :func:`toy_set` — an EmbeddingSet whose trunk features mix a per-pair
  identity latent (what re-linkage exploits) with the 14 labels (what a probe
  reads), shared by image and text through different random maps, plus
  optional modality-specific nuisance factors and isotropic noise; heads
  from :func:`toy_heads` make its projected rows;
* :func:`tiny_model_set` — a real open_clip model (``relink-vit-tiny``,
  random weights) saved as a checkpoint folder, and an EmbeddingSet of random
  images and reports encoded by it (trunks and projections from
  :func:`relink.models.trunks.encode_trunks_and_heads`).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from relink.embeddings import EmbeddingSet, l2_normalise
from relink.labels import CHEXPERT_LABELS
from relink.models.heads import Heads


def toy_heads(di: int, dt: int, e: int = 16, seed: int = 0) -> Heads:
    torch.manual_seed(seed)
    return Heads(image=nn.Linear(di, e, bias=False), text=nn.Linear(dt, e, bias=False))


def project(layer: nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return l2_normalise(layer(torch.from_numpy(np.array(x, dtype=np.float32))).numpy())


def toy_set(n_patients: int = 40, per_patient: int = 2, di: int = 48, dt: int = 40, heads: Heads | None = None,
            identity: float = 1.0, noise: float = 0.3, label_strength: float = 2.0, nuisance: int = 0, label_flip: float = 0.0,
            seed: int = 0,
            splits=(("train", 0.6), ("validate", 0.2), ("test", 0.2)), cohort: str = "toy", prefix: str = "p") -> EmbeddingSet:
    """Patients get a split (so splits are patient-disjoint); pair ids ``{prefix}{patient}_{k}``."""
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    k = 12
    z = rng.standard_normal((n, k)) * identity
    labels = (rng.random((n, len(CHEXPERT_LABELS))) < 0.3).astype(np.float64)
    labels[rng.random(labels.shape) < 0.1] = np.nan
    labels[rng.random(labels.shape) < 0.05] = -1.0
    lab = np.nan_to_num(labels, nan=0.0).clip(0, 1)
    if label_flip:  # what the pixels and words show is not exactly what the labeler recorded
        lab = np.where(rng.random(lab.shape) < label_flip, 1 - lab, lab)
    maps = np.random.default_rng(1234)  # the "world": fixed across calls, so two cohorts share it
    a_img, a_txt = maps.standard_normal((k, di)), maps.standard_normal((k, dt))
    l_img, l_txt = maps.standard_normal((lab.shape[1], di)), maps.standard_normal((lab.shape[1], dt))
    image_trunk = z @ a_img + label_strength * lab @ l_img + noise * rng.standard_normal((n, di))
    text_trunk = z @ a_txt + label_strength * lab @ l_txt + noise * rng.standard_normal((n, dt))
    if nuisance:  # content one modality has and the other lacks (pose, exposure; phrasing)
        image_trunk += rng.standard_normal((n, nuisance)) @ maps.standard_normal((nuisance, di))
        text_trunk += rng.standard_normal((n, nuisance)) @ maps.standard_normal((nuisance, dt))
    image_trunk, text_trunk = image_trunk.astype(np.float32), text_trunk.astype(np.float32)
    patient = np.repeat(np.arange(n_patients), per_patient)
    names, probs = zip(*splits)
    patient_split = rng.choice(names, size=n_patients, p=np.asarray(probs) / sum(probs))
    rows = pd.DataFrame({
        "pair_id": [f"{prefix}{p}_{j}" for p, j in zip(patient, np.tile(np.arange(per_patient), n_patients))],
        "patient_id": [f"{prefix}{p}" for p in patient], "study_id": [f"s{i}" for i in range(n)],
        "cohort": cohort, "split": patient_split[patient],
    })
    for j, name in enumerate(CHEXPERT_LABELS):
        rows[name] = labels[:, j]
    heads = heads or toy_heads(di, dt)
    return EmbeddingSet(rows, project(heads.image, image_trunk), project(heads.text, text_trunk),
                        image_trunk, text_trunk, {"model": "toy"})


@functools.lru_cache(maxsize=None)
def tiny_model_set(n: int = 60, seed: int = 0):
    """``(checkpoint_dir, embedding_set_dir)`` made with a real tiny open_clip model.

    Made once per test session (several test files share it) in a temporary
    folder removed at exit; callers must not modify it.
    """
    from relink.embeddings import save
    from relink.models import load_model
    from relink.models.checkpoint import save_checkpoint
    from relink.models.trunks import encode_trunks_and_heads

    root = Path(tempfile.mkdtemp(prefix="relink-dp-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    torch.manual_seed(seed)
    loaded = load_model("relink-vit-tiny")
    # a random initialisation, recorded as such (what the DP run reads to judge its trunk)
    ckpt = save_checkpoint(loaded.model, root / "model", loaded.model_cfg, loaded.preprocess_cfg,
                           extra={"trained_on": "random-init"})
    rng = np.random.default_rng(seed)
    words = ["effusion", "cardiomegaly", "normal", "opacity", "left", "right", "small", "large", "no", "edema"]
    reports = [" ".join(rng.choice(words, size=6)) for _ in range(n)]
    images = torch.as_tensor(rng.standard_normal((n, 3, 64, 64)), dtype=torch.float32)
    with torch.no_grad():
        it, ip, tt, tp = encode_trunks_and_heads(loaded.model, images, loaded.tokenizer(reports))
    es = toy_set(n_patients=n // 2, per_patient=2, seed=seed)
    es = EmbeddingSet(es.rows, l2_normalise(ip.numpy()), l2_normalise(tp.numpy()), it.numpy(), tt.numpy(),
                      {"model": str(ckpt), "weights_fingerprint": loaded.fingerprint})
    return ckpt, save(es, root / "emb")


def privatised_gradient(setup, batch) -> list[torch.Tensor]:
    """The test oracle of the mechanism: the gradient the optimizer would apply for ``batch`` (clipped, noised,
    scaled), without stepping. With ``noise_multiplier=0`` and ``loss_reduction="sum"`` it is the sum of the
    clipped per-unit gradients (``setup``: :func:`relink.dp.steps.build`)."""
    from relink.dp.steps import batch_loss, quiet

    setup.optimizer.zero_grad()
    with quiet():
        batch_loss(setup, batch).backward()
    if setup.private:
        setup.optimizer.pre_step()
    grads = [p.grad.detach().clone() for p in setup.heads.parameters()]
    setup.optimizer.zero_grad()
    return grads
