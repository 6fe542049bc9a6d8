"""Result ``dp``: the strongest model's heads retrained with DP at every epsilon of the profile.

Tables ``effects.parquet`` (Recall@1 per state ``before`` | ``dp`` |
``non_private``, epsilon, cohort and pool) and ``sweep.parquet`` (the privacy
record of each run); ``privacy.json`` (the headline run), its heads, the
mitigated checkpoint and re-projected internal sets.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import write_json
from ..stages import Context, load
from . import Result
from .common import finish, headline_sets, recall_rows

PUBLIC_PRIVACY_FIELDS = ("epsilon", "target_epsilon", "delta", "accountant", "prv_epsilon", "rdp_epsilon",
                         "noise_multiplier", "clip_norm", "sample_rate", "expected_batch_size", "epochs", "steps",
                         "privacy_unit", "n_units", "n_bank", "lr", "temperature", "grad_sample_mode", "seed", "private")


def build(ctx: Context, tmp: Path, upstream: dict[str, Path]) -> None:
    from ...dp.apply import apply_heads, save_heads, write_checkpoint
    from ...dp.train import fit_heads
    from ...embeddings import save as save_embeddings
    from ...models.heads import extract_heads

    p = ctx.profile
    rung, full, sets = headline_sets(ctx)
    loaded = load(rung)
    init = extract_heads(loaded.model)
    train, bank = full.split("train"), full.split("validate")
    frames = [recall_rows(ctx, rung, sets, "before", None)]
    sweep, headline = [], None
    epsilons = sorted({e for e in p.epsilons if e is not None} | {p.epsilon}) + ([None] if None in p.epsilons else [])
    for eps in epsilons:
        private = eps is not None
        heads, report = fit_heads(train, bank, init, epsilon=eps, delta=p.delta, accountant=p.accountant,
                                  clip_norm=p.dp_clip_norm, epochs=p.dp_epochs, batch_size=p.dp_batch_size, lr=p.dp_lr,
                                  temperature=p.dp_temperature, random_state=p.dp_seed, private=private,
                                  progress=ctx.progress)
        after = {role: apply_heads(es, heads) for role, es in sets.items()}
        frames.append(recall_rows(ctx, rung, after, "dp" if private else "non_private", eps))
        public = {k: report.get(k) for k in PUBLIC_PRIVACY_FIELDS}
        sweep.append({"setting": f"ε = {eps:g}" if private else "no DP", **public})
        if private and eps == p.epsilon:
            headline = (heads, public)
        if not private:
            save_embeddings(apply_heads(full, heads), tmp / "non-private-internal")
    heads, public = headline
    save_heads(heads, tmp / "heads.safetensors")
    save_embeddings(apply_heads(full, heads), tmp / "mitigated-internal")
    write_checkpoint(loaded, heads, tmp / "checkpoint", extra={"privacy": public})
    write_json(tmp / "privacy.json", public)
    finish(tmp, ctx, "dp", {"effects.parquet": pd.concat(frames, ignore_index=True), "sweep.parquet": pd.DataFrame(sweep)},
           {"model": rung.name, "privacy": public})


RESULT = Result("dp", build, source=("dp", "retrieval", "models"),
                fields=("eval_split", "pools", "ks", "n_boot", "audit_seed", "epsilon", "delta", "accountant",
                        "epsilons", "dp_epochs", "dp_batch_size", "dp_lr", "dp_clip_norm", "dp_temperature",
                        "dp_privacy_unit", "dp_seed"))
