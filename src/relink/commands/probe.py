"""`relink probe`: the utility embeddings keep (linear probe, zero-shot, member gap)."""

from __future__ import annotations

import argparse

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
    from ..api.probe import ProbeSpec
    from ..options import add_spec_arguments

    p = sub.add_parser("probe", help="linear-probe / zero-shot AUROC and member gap of embedding sets",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, nargs="+", metavar="DIR", help="one or more embedding sets")
    p.add_argument("--model", metavar="SPEC", help="model for zero-shot prompts (see above)")
    p.add_argument("--out", required=True, metavar="FILE", help=".csv, .parquet or .json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a probe table")
    add_spec_arguments(p, ProbeSpec)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.probe import ProbeSpec, probe
    from ..embeddings import public_model_name
    from ..guard import claim, existing_path, set_models
    from ..io import writing
    from ..options import spec_from_args
    from ..provenance import stamp
    from ..tables import table_output, write_table

    spec = spec_from_args(ProbeSpec, args)
    claim("probe", [table_output("--out", args.out)],
          inputs=[("--embeddings", args.embeddings), ("--model", existing_path(args.model)),
                  *(set_models("--embeddings", args.embeddings) if spec.zeroshot else [])], overwrite=args.overwrite)
    result = probe(args.embeddings, spec, model=args.model)
    with writing(args.out):
        write_table(result.table, args.out, stamp(command="probe", embeddings=list(result.names),
                                                  features=list(spec.feature_kinds), split=spec.split,
                                                  uncertain=spec.uncertain, seed=spec.seed,
                                                  model=public_model_name(args.model)))
    for note in result.notes:
        print(f"relink probe: note: {note}")
    for _, r in result.macro().iterrows():
        print(f"relink probe: {r['embeddings']} {r['features']}: macro AUROC {r['value']:.4f} over {int(r['n_labels'])} labels")
    print(f"relink probe: wrote {len(result.table)} rows -> {args.out}")
    return 0

