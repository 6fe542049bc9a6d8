"""`relink probe`: the utility embeddings keep (linear probe, zero-shot, member gap)."""

from __future__ import annotations

import argparse

from ..options import argtype
from . import HelpFormatter

DESCRIPTION = """\
Linear-probe AUROC per CheXpert label (and the macro mean over the labels
with both classes in the test part) of each --embeddings set's image
features: projected embeddings, and trunk features as a control (a probe is
blind to an invertible change of the head, so it barely moves when only the
heads change). Split: the cohort's own train/test rows, else patient-disjoint
(GroupShuffleSplit on patient_id). Positive = 1; negative = 0 or missing;
uncertain (-1) rows are left out of that label unless --uncertain says
otherwise. Give the set before and after `relink mitigate` to compare.

Utilities that depend on alignment:
  --zeroshot       AUROC of cos(image, "<finding>") - cos(image, "no <finding>"),
                   prompts through each set's own text head (the model its
                   meta.json names: for a mitigated set, its checkpoint);
                   --model SPEC encodes the prompts' text trunk instead, and
                   supplies the head for sets that name no model.
  --member-gap N   Recall@1 at pool N of training members (split train) vs
                   held-out non-members (split test).

Writes one tidy table (.csv, .parquet or .json by extension) with provenance;
column `utility` says which rows are which.
"""

EPILOG = """\
examples:
  relink probe --embeddings emb/internal --out results/probe.parquet
  relink probe --embeddings emb/internal dp/eps0.34/embeddings/internal --features both \\
      --zeroshot --member-gap 1000 --out results/utility.csv
"""


def register(sub) -> None:
    p = sub.add_parser("probe", help="linear-probe / zero-shot AUROC and member gap of embedding sets",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, nargs="+", metavar="DIR", help="one or more embedding sets")
    p.add_argument("--features", choices=("projected", "trunk", "both"), default="both")
    p.add_argument("--model", metavar="SPEC", help="model for zero-shot prompts (see above)")
    p.add_argument("--zeroshot", action="store_true", help="add zero-shot AUROC from label prompt pairs")
    p.add_argument("--member-gap", type=argtype(int, 0, 10_000_000), metavar="N", default=0,
                   help="add the member gap at pool N (0 = off)")
    p.add_argument("--split", choices=("auto", "cohort", "group"), default="auto", help="probe train/test split")
    p.add_argument("--uncertain", choices=("exclude", "negative", "positive"), default="exclude")
    p.add_argument("--max-iter", type=argtype(int, 1, 1_000_000), default=5000, help="LogisticRegression max_iter")
    p.add_argument("--seed", type=argtype(int, 0, 2**32 - 1), default=0)
    p.add_argument("--out", required=True, metavar="FILE", help=".csv, .parquet or .json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a probe table")
    p.set_defaults(func=run)


def _trunk_key(es) -> tuple:
    import hashlib

    import numpy as np

    head = np.ascontiguousarray(np.asarray(es.image_trunk[:64], dtype=np.float32))
    return len(es), hashlib.sha256(head.tobytes()).hexdigest()


def _labels(paths: list[str]) -> list[str]:
    """Short names for the sets: the folder name, or its last three parts where names repeat."""
    from pathlib import Path

    names = [Path(p).name for p in paths]
    return [n if names.count(n) == 1 else "/".join(Path(p).parts[-3:]) for n, p in zip(names, paths)]


def _member_gap(es, path: str, args):
    """The member-gap rows of one set; a --member-gap larger than the pools its rows fill is refused, as the
    audit refuses a pool larger than the candidate set."""
    from ..errors import RelinkError
    from ..utility.membership import member_gap

    g = member_gap(es, N=args.member_gap, random_state=args.seed).rename(columns={"queries": "label"})
    fillable = int(g["N"].min())
    if fillable < args.member_gap:
        raise RelinkError(f"--member-gap {args.member_gap} is larger than the pools the train and test rows of "
                          f"--embeddings {path} can fill (at most N={fillable} after matching patients); "
                          "give a smaller --member-gap")
    g.insert(0, "utility", "member_gap")
    return g


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from .. import embeddings as emb
    from ..errors import RelinkError
    from ..guard import claim, existing_path, set_models
    from ..io import writing
    from ..provenance import stamp
    from ..tables import table_output, write_table
    from ..utility.probe import probe_embeddings

    claim("probe", [table_output("--out", args.out)],
          inputs=[("--embeddings", args.embeddings), ("--model", existing_path(args.model)),
                  *(set_models("--embeddings", args.embeddings) if args.zeroshot else [])], overwrite=args.overwrite)
    if args.member_gap == 1:
        raise RelinkError("--member-gap must be 0 (off) or a pool size of at least 2, got 1")
    features = ("projected", "trunk") if args.features == "both" else (args.features,)
    models: dict = {}

    def model(spec):
        if spec not in models:
            from ..models import load_model

            models[spec] = load_model(spec)
        return models[spec]

    frames, seen_trunks = [], set()
    for path, label in zip(args.embeddings, _labels(args.embeddings)):
        es = emb.load(path, require_trunk="trunk" in features)
        gap = _member_gap(es, path, args) if args.member_gap > 0 else None
        feats = tuple(f for f in features if f != "trunk" or _trunk_key(es) not in seen_trunks)
        if "trunk" in feats:
            seen_trunks.add(_trunk_key(es))
        t = probe_embeddings(es, feats, split=args.split, uncertain=args.uncertain, max_iter=args.max_iter,
                             random_state=args.seed)
        t.insert(0, "utility", "linear_probe")
        frames.append(t.assign(embeddings=label))
        if args.zeroshot:
            from ..models.heads import project
            from ..models.heads import extract_heads
            from ..utility.zeroshot import zeroshot_auroc

            head_spec = es.meta.get("model") or args.model
            if not head_spec:
                raise RelinkError(f"{path}: meta.json names no model for --zeroshot; pass --model SPEC")
            text_head = extract_heads(model(head_spec).model).text
            if es.text_trunk is not None and not np.allclose(project(text_head, np.asarray(es.text_trunk[:16])),
                                                             np.asarray(es.text[:16]), atol=1e-3):
                raise RelinkError(f"{path}: the text head of {head_spec!r} does not reproduce text.npy")
            z = zeroshot_auroc(es, model(args.model or head_spec), text_head=text_head, uncertain=args.uncertain)
            z.insert(0, "utility", "zeroshot")
            frames.append(z.assign(embeddings=label))
        if gap is not None:
            frames.append(gap.assign(metric="recall", embeddings=label))
    table = pd.concat(frames, ignore_index=True)
    with writing(args.out):
        write_table(table, args.out, stamp(command="probe", embeddings=_labels(args.embeddings),
                                           features=list(features), split=args.split, uncertain=args.uncertain,
                                           seed=args.seed, model=args.model))
    macro = table[(table["utility"] == "linear_probe") & (table["label"] == "macro")]
    for _, r in macro.iterrows():
        print(f"relink probe: {r['embeddings']} {r['features']}: macro AUROC {r['value']:.4f} over {int(r['n_labels'])} labels")
    print(f"relink probe: wrote {len(table)} rows -> {args.out}")
    return 0
