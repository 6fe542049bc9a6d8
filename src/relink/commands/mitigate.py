"""`relink mitigate`: retrain only the projection heads with differential privacy."""

from __future__ import annotations

import argparse

from ..dp import DEFAULTS
from . import HelpFormatter

DESCRIPTION = """\
Train ONLY the two projection heads (image and text, each an nn.Linear started
from the model's own heads) on the cached trunk features of the private rows
(split == "train" of --embeddings), with Opacus DP-SGD: Poisson sampling,
per-unit clipping, Gaussian noise calibrated to (--epsilon, --delta) by the
named accountant. The encoders are not trained (they are not in the graph).

Each unit's loss is a symmetric InfoNCE of its pair against a FIXED negative
bank that is not private data: --bank DIR (any embedding set with trunk
features), or by default the "validate" split of --embeddings. The bank must
share no pair (and with --privacy-unit patient no patient) with the private
set. The bank itself gets no protection.

Privacy unit: one study pair (default), or with --privacy-unit patient all of
a patient's pairs sampled and clipped together (the per-patient gradient is
the sum over its pairs).

Writes into --out: heads.safetensors, privacy.json (epsilon with its
accountant, the RDP epsilon for the same noise, noise multiplier, clip norm,
sample rate, steps, ...), checkpoint/ (an ordinary open_clip checkpoint with
the new heads; a valid --model spec), and embeddings/<name>/ for
--embeddings and every --apply set: the new heads applied to cached trunk
features, nothing re-encoded.
"""

EPILOG = """\
examples:
  relink mitigate --embeddings emb/internal --epsilon 0.34 --delta 6e-6 --out dp/eps0.34
  relink mitigate --embeddings emb/internal --bank emb/public --epsilon 1 --delta 1e-6 \\
      --accountant rdp --apply emb/external --out dp/eps1
  relink mitigate --embeddings emb/internal --non-private --out dp/nonprivate
"""


def register(sub) -> None:
    p = sub.add_parser("mitigate", help="retrain the projection heads with differential privacy",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="embedding set with trunk features; its split == 'train' rows are private")
    p.add_argument("--bank", metavar="DIR", help="negative bank (embedding set with trunk features); default: the 'validate' split of --embeddings")
    p.add_argument("--epsilon", type=float, help="target epsilon (required unless --non-private)")
    p.add_argument("--delta", type=float, help="target delta, well below 1/n (required unless --non-private)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced atomically)")
    p.add_argument("--accountant", choices=("prv", "rdp"), default="prv", help="accountant that calibrates the noise")
    p.add_argument("--clip-norm", type=float, default=1.0, help="per-unit gradient clip norm")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="expected Poisson batch size (sample rate 1/ceil(n/B))")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate (with the noise, it sets how far the heads move)")
    p.add_argument("--temperature", type=float, default=None, help="fixed InfoNCE temperature (default: the model's own, 1/exp(logit_scale))")
    p.add_argument("--privacy-unit", choices=("pair", "patient"), default="pair")
    p.add_argument("--bank-size", type=int, default=None, help="use a fixed random subset of this many bank rows")
    p.add_argument("--grad-sample-mode", choices=("ghost", "hooks"), default="ghost", help="Opacus per-sample gradient mode")
    p.add_argument("--non-private", action="store_true", help="same training without clipping or noise (for comparison)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--apply", action="append", default=[], metavar="DIR", help="another embedding set to re-project (repeatable)")
    p.add_argument("--model", metavar="SPEC", help="model whose heads start training (default: 'model' in --embeddings/meta.json)")
    p.set_defaults(func=run)


def _names(paths: list[str]) -> list[str]:
    from pathlib import Path

    names, seen = [], {}
    for p in paths:
        base = Path(p).name or "embeddings"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def run(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    import numpy as np

    from .. import embeddings as emb
    from ..dp import apply as dp_apply
    from ..dp.heads_data import default_bank, private_split
    from ..dp.train import fit_heads
    from ..errors import RelinkError
    from ..io import atomic_dir, write_json
    from ..models import load_model
    from ..models.heads import extract_heads, project
    from ..models.registry import weights_fingerprint
    from ..provenance import stamp

    private = not args.non_private
    if private and (args.epsilon is None or args.delta is None):
        raise RelinkError("--epsilon and --delta are required (or pass --non-private)")
    es = emb.load(args.embeddings, require_trunk=True)
    train = private_split(es, "train")
    bank = emb.load(args.bank, require_trunk=True) if args.bank else default_bank(es)
    others = [emb.load(p, require_trunk=True) for p in args.apply]
    spec = args.model or es.meta.get("model")
    if not spec:
        raise RelinkError(f"{args.embeddings}/meta.json names no model; pass --model SPEC")
    loaded = load_model(spec)
    init = extract_heads(loaded.model)
    check = project(init.image, np.asarray(es.image_trunk[:16]))
    if init.image.in_features == es.image_trunk.shape[1] and not np.allclose(check, np.asarray(es.image[:16]), atol=1e-3):
        raise RelinkError(f"the heads of model {spec!r} do not reproduce {args.embeddings}/image.npy: wrong --model?")
    temperature = args.temperature
    if temperature is None:
        scale = getattr(loaded.model, "logit_scale", None)
        temperature = float(1.0 / math.exp(float(scale.detach()))) if scale is not None else 0.07
    heads, report = fit_heads(
        train, bank, init, epsilon=args.epsilon if private else None, delta=args.delta if private else None,
        accountant=args.accountant, clip_norm=args.clip_norm, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        temperature=temperature, grad_sample_mode=args.grad_sample_mode, random_state=args.seed, private=private,
        privacy_unit=args.privacy_unit, bank_size=args.bank_size,
    )
    out = Path(args.out)
    report.update(model=spec, bank="validate split of --embeddings" if not args.bank else Path(args.bank).name,
                  embeddings=Path(args.embeddings).name, heads_fingerprint=dp_apply.heads_fingerprint(heads))
    provenance = stamp(command="mitigate", base_weights_fingerprint=loaded.fingerprint)
    ckpt_spec = str(out / "checkpoint")
    sets = [es] + others
    names = _names([args.embeddings] + list(args.apply))
    summary = {k: report[k] for k in ("private", "accountant", "epsilon", "rdp_epsilon", "delta", "noise_multiplier",
                                        "clip_norm", "privacy_unit", "heads_fingerprint")}
    with atomic_dir(out) as tmp:
        dp_apply.save_heads(heads, tmp / "heads.safetensors")
        write_json(tmp / "privacy.json", {**report, "provenance": provenance})
        dp_apply.write_checkpoint(loaded, heads, tmp / "checkpoint", extra={"relink_heads": summary, "base_model": spec})
        fp = weights_fingerprint(loaded.model)  # the model now carries the new heads
        for name, s in zip(names, sets):
            new = dp_apply.apply_heads(s, heads, {"heads": summary, "model": ckpt_spec, "weights_fingerprint": fp})
            emb.save(new, tmp / "embeddings" / name)
    eps = "non-private" if not private else (
        f"epsilon {report['epsilon']:.3f} ({report['accountant'].upper()}; RDP {report['rdp_epsilon']:.3f}), "
        f"delta {report['delta']:g}, sigma {report['noise_multiplier']:.3f}")
    print(f"relink mitigate: {eps}, {report['steps']} steps over {report['n_units']} {report['privacy_unit']}s -> {out}")
    return 0
