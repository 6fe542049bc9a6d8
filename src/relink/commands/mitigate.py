"""`relink mitigate`: retrain only the projection heads with differential privacy."""

from __future__ import annotations

import argparse

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
set, and no pair or patient with the rows evaluated afterwards (the other
non-train rows of --embeddings and every --apply set). The bank itself gets
no protection.

Privacy unit: one study pair (default), or with --privacy-unit patient all of
a patient's pairs sampled and clipped together. --delta must lie below 1/n
for n private units: on a large cohort with several studies per patient, the
patient is the unit that protects a person and admits a smaller n.

The noise is secret: its seed is drawn from the operating system's entropy
and never written or shown (anyone who knew it could replay the run with and
without one unit). --reproducible-noise SEED seeds it instead, for studies;
every output then says "for study, not for release".

Writes into --out (a folder; an existing one is replaced only when it is an
earlier `relink mitigate` output, or with --overwrite): heads.safetensors,
privacy.json (epsilon with its accountant, the RDP epsilon for the same
noise, noise multiplier, clip norm, sample rate, steps, unit, release
status), checkpoint/ (an ordinary open_clip checkpoint with the new heads; a
valid --model spec), and embeddings/<name>/ for --embeddings and every
--apply set: the new heads applied to cached trunk features, nothing
re-encoded. Evaluate the test rows: the train rows are the private set and
the default bank is the validate rows.
"""

EPILOG = """\
examples:
  relink mitigate --embeddings emb/internal --epsilon 0.34 --delta 6e-6 --out dp/eps0.34
  relink mitigate --embeddings emb/internal --bank emb/public --epsilon 1 --delta 1e-6 \\
      --accountant rdp --privacy-unit patient --apply emb/external --out dp/eps1
  relink mitigate --embeddings emb/internal --epsilon 0.34 --delta 6e-6 \\
      --reproducible-noise 0 --out dp/study      # replayable: not for release
  relink mitigate --embeddings emb/internal --non-private --out dp/nonprivate
"""

INTERRUPTED = "interrupted; no output was written (an earlier --out is left as it was)"


def register(sub) -> None:
    from ..dp.spec import MitigationSpec
    from ..options import add_spec_arguments

    p = sub.add_parser("mitigate", help="retrain the projection heads with differential privacy",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="embedding set with trunk features; its split == 'train' rows are private")
    p.add_argument("--bank", metavar="DIR", help="negative bank (embedding set with trunk features); default: the 'validate' split of --embeddings")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a mitigate output")
    p.add_argument("--apply", action="append", default=[], metavar="DIR", help="another embedding set to re-project (repeatable)")
    p.add_argument("--model", metavar="SPEC", help="model whose heads start training (default: 'model' in --embeddings/meta.json)")
    add_spec_arguments(p, MitigationSpec)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import embeddings as emb
    from ..dp.service import mitigate, write
    from ..dp.spec import MitigationSpec
    from ..guard import Output, claim, existing_path
    from ..io import writing
    from ..options import spec_from_args

    spec = spec_from_args(MitigationSpec, args)
    out = Path(args.out)  # the output guard: the folder, apart from every input
    claim("mitigate", [Output("--out", out, "dir")], overwrite=args.overwrite,
          inputs=[("--embeddings", args.embeddings), ("--bank", args.bank), ("--apply", args.apply),
                  ("--model", existing_path(args.model))])
    es = emb.load(args.embeddings, require_trunk=True)
    bank = emb.load(args.bank, require_trunk=True) if args.bank else None
    others = [emb.load(p, require_trunk=True) for p in args.apply]
    names = [Path(p).name or "embeddings" for p in [args.embeddings, *args.apply]]
    result = mitigate(es, spec, bank=bank, model=args.model, apply=others, names=names)
    with writing(out):
        write(result, out)
    report = result.report
    what = "non-private" if not report["private"] else (
        f"epsilon {report['epsilon']:.3f} ({report['accountant'].upper()}; RDP {report['rdp_epsilon']:.3f}), "
        f"delta {report['delta']:g}, sigma {report['noise_multiplier']:.3f}")
    status = "for_release: true (secret noise)" if report["for_release"] else \
        f"for_release: false ({report['release_note']})"
    print(f"relink mitigate: {what}, {report['steps']} steps over {report['n_units']} {report['privacy_unit']}s "
          f"-> {out}; {status}")
    return 0
