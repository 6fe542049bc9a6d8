"""`relink mitigate`: retrain only the projection heads with differential privacy."""

from __future__ import annotations

import argparse

from ..options import argtype
from . import HelpFormatter

DESCRIPTION = """\
Train ONLY the two projection heads (image and text, each an nn.Linear) on
the cached trunk features of the private rows (split == "train" of
--embeddings) with Opacus DP-SGD: Poisson sampling, per-unit clipping,
Gaussian noise calibrated to (--epsilon, --delta) by the named accountant.
The encoders are not trained (they are not in the graph).

What epsilon covers: the heads' training, given their start and the trunk.
The heads start from a seeded random initialisation (--init-seed; open_clip's
own rule for projections), or from the heads of --init SPEC, a model whose
relink.json declares it trained without the private rows; the temperature is
fixed before training (--temperature), never the model's learned one. The
output says what the start and the trunk were trained on ("random-init",
"public:NAME", "private:FINGERPRINT" or "not recorded"; a hub model is
public, --trunk-trained-on public:NAME declares a local model that records
nothing). for_release is true only for a private run with secret noise whose
start and trunk are independent of the private rows; otherwise privacy.json
says why.

Each unit's loss is a symmetric InfoNCE of its pair against a FIXED negative
bank: --bank DIR (public or external data is best; default: the "validate"
split of --embeddings). The bank must share no pair (with --privacy-unit
patient, no patient) with the private set, and no pair or patient with the
rows evaluated afterwards. The bank's patients get NO guarantee (bank_note).

Privacy unit: one study pair (default), or with --privacy-unit patient all of
a patient's pairs sampled and clipped together. --delta must be at most
1/(10 n) for n private units.

The noise is secret: its seed is drawn from the operating system's entropy
and never written or shown. --reproducible-noise SEED seeds it instead, for
studies; every output then says "for study, not for release".

--out (the release folder) holds only what is released: heads.safetensors,
privacy.json (epsilon and its accountant, delta, unit, sigma, q, steps, C,
trained_on, bank_note, for_release, release_reason) and, when the trunk may be
released, checkpoint/ (an open_clip checkpoint with the new heads). --study
DIR receives what is derived from the private rows, not for release: the
full run record and embeddings/<name>/ for --embeddings and every --apply set
(what `relink report --mitigated` reads). An existing folder is replaced only
when it is an earlier `relink mitigate` output, or with --overwrite.

--audit-privacy runs an empirical privacy audit instead (one training run
with canaries, Steinke, Nasr and Jagielski 2023): audit.json in --out holds
the 95%-confidence lower bound on epsilon and a membership attack's TPR at
FPR 0.01 and 0.1 beside what (epsilon, delta) allows.
"""

EPILOG = """\
examples:
  relink mitigate --embeddings emb/internal --bank emb/public --epsilon 0.34 --delta 1e-6 --out dp/eps0.34
  relink mitigate --embeddings emb/internal --bank emb/public --epsilon 1 --delta 1e-6 \\
      --accountant rdp --privacy-unit patient --apply emb/external --out dp/eps1 --study dp/eps1-study
  relink mitigate --embeddings emb/internal --epsilon 0.34 --delta 1e-6 \\
      --reproducible-noise 0 --out dp/study      # replayable: not for release
  relink mitigate --embeddings emb/internal --non-private --out dp/nonprivate --study dp/nonprivate-study
  relink mitigate --embeddings emb/internal --epsilon 1 --delta 1e-6 --audit-privacy --out dp/audit
"""

INTERRUPTED = "interrupted; no output was written (an earlier --out is left as it was)"


def register(sub) -> None:
    from ..dp.spec import MitigationSpec
    from ..options import add_spec_arguments

    p = sub.add_parser("mitigate", help="retrain the projection heads with differential privacy",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--embeddings", required=True, metavar="DIR", help="embedding set with trunk features; its split == 'train' rows are private")
    p.add_argument("--bank", metavar="DIR", help="negative bank (embedding set with trunk features; its patients get no guarantee); default: the 'validate' split of --embeddings")
    p.add_argument("--out", required=True, metavar="DIR", help="release folder: heads, privacy.json (written atomically)")
    p.add_argument("--study", metavar="DIR", help="study folder for what is derived from the private rows (not for release)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out/--study that is not a mitigate output")
    p.add_argument("--apply", action="append", default=[], metavar="DIR", help="another embedding set to re-project into --study (repeatable)")
    p.add_argument("--model", metavar="SPEC", help="model whose trunk features --embeddings holds (default: 'model' in --embeddings/meta.json)")
    p.add_argument("--init", metavar="SPEC", help="start from this model's heads (declared trained without the private rows in its relink.json) instead of a random start")
    p.add_argument("--trunk-trained-on", metavar="public:NAME", help="declare that the model's trunk was trained without the private rows (when its weights record nothing)")
    p.add_argument("--audit-privacy", action="store_true", help="run the empirical privacy audit (canaries, one run) and write audit.json into --out")
    p.add_argument("--canaries", type=argtype(int, 2), default=None, metavar="M", help="canary pairs of --audit-privacy (default: a quarter of the private rows, at most 1000)")
    add_spec_arguments(p, MitigationSpec)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    from pathlib import Path

    from ..api.mitigate import mitigate
    from ..dp.release import write
    from ..dp.spec import MitigationSpec
    from ..guard import Output, claim
    from ..io import writing
    from ..options import spec_from_args

    spec = spec_from_args(MitigationSpec, args)
    if args.audit_privacy:
        return _audit(args, spec)
    # the output guard: release and study folders apart from each other and from every input
    out, *rest = claim("mitigate", [Output("--out", Path(args.out), "dir"),
                                    Output("--study", Path(args.study), "dir") if args.study else None],
                       overwrite=args.overwrite, inputs=_inputs(args))
    study = rest[0] if rest else None
    result = mitigate(args.embeddings, spec, bank=args.bank, model=args.model, init=args.init,
                      trunk_trained_on=args.trunk_trained_on, apply=args.apply)
    with writing(out), writing(study, flag="--study") if study is not None else contextlib.nullcontext():
        write(result, out, study)
    report = result.report
    what = "non-private" if not report["private"] else (
        f"epsilon {report['epsilon']:.3f} ({report['accountant'].upper()}; RDP {report['rdp_epsilon']:.3f}), "
        f"delta {report['delta']:g}, sigma {report['noise_multiplier']:.3f}")
    status = "for_release: true" if report["for_release"] else f"for_release: false ({report['release_reason']})"
    where = f"{out}" + (f" (study: {study})" if study is not None else "")
    print(f"relink mitigate: {what}, {report['steps']} steps, start {report['trained_on']['start']}, trunk "
          f"{report['trained_on']['trunk']} -> {where}; {status}")
    return 0


def _inputs(args: argparse.Namespace) -> list:
    from ..guard import existing_path, set_models

    # without --model the trunk is loaded from the model --embeddings names: an input like the others
    named = [] if args.model else set_models("--embeddings", args.embeddings)
    return [("--embeddings", args.embeddings), ("--bank", args.bank), ("--apply", args.apply),
            ("--model", existing_path(args.model)), ("--init", existing_path(args.init)), *named]


def _audit(args: argparse.Namespace, spec) -> int:
    from pathlib import Path

    from .. import embeddings as emb
    from ..dp.audit import run_audit
    from ..errors import RelinkError
    from ..guard import Output, claim
    from ..io import writing

    if args.study or args.apply or args.init:
        raise RelinkError("--audit-privacy trains its own canary run: drop --study, --apply and --init")
    (out,) = claim("mitigate", [Output("--out", Path(args.out), "dir")], overwrite=args.overwrite,
                   inputs=_inputs(args))
    es = emb.load(args.embeddings, require_trunk=True)
    bank = emb.load(args.bank, require_trunk=True) if args.bank else None
    with writing(out):
        audit = run_audit(es, spec, bank=bank, model=args.model, canaries=args.canaries, out=out)
    print(f"relink mitigate --audit-privacy: claimed epsilon {audit['claimed_epsilon']}, empirical lower bound "
          f"{audit['epsilon_lower_bound']:.3f} (95%), membership TPR {audit['tpr_at_fpr_0.1']:.3f} at FPR 0.1 -> {out}")
    return 0
