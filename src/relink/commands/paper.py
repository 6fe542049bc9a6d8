"""``relink paper``: build the artifacts, execute the changed chapters, compile the book."""

from __future__ import annotations

from . import HelpFormatter

EPILOG = """examples:
  relink paper                              # default synthetic profile, whole book
  relink paper --profile smoke              # tiny, for a quick look (what CI runs)
  relink paper --chapters 02,04             # re-execute two chapters if their inputs changed
  relink paper --chapters 04 --force        # re-execute chapter 4 even if up to date
  relink paper --set n_boot=200 --no-book   # override a profile field, skip the book build
  RELINK_MIMIC_IMAGES=... RELINK_MIMIC_REPORTS=... relink paper --profile mimic
"""


INTERRUPTED = ("interrupted; finished stages and results are kept in the artifact folder, and a re-run resumes "
               "(ladder training and embedding where they stopped)")


def register(sub):
    p = sub.add_parser(
        "paper", help="run the paper end to end (artifacts, chapters, book)",
        description=__doc__, epilog=EPILOG, formatter_class=HelpFormatter,
    )
    p.add_argument("--profile", default="synthetic", help="synthetic | smoke | mimic | chexpert-plus")
    p.add_argument("--chapters", nargs="*", default=None, help="chapter numbers or names (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a profile field (repeatable), e.g. n_boot=200 or pools=10,100,full")
    p.add_argument("--artifacts", default=None, help="artifact folder (default: artifacts/<profile> in the repository)")
    p.add_argument("--force", action="store_true", help="re-execute the selected chapters even if up to date")
    p.add_argument("--no-book", dest="book", action="store_false", help="execute chapters but do not build the book")
    p.add_argument("--strict", action="store_true", help="build the book with -W -n --keep-going --all (as CI does)")
    p.set_defaults(func=run)


def _keep_data_apart(profile, artifacts) -> None:
    """The output guard's one rule that applies to the paper's artifact folder (a cache the paper owns and
    resumes): it never lies inside, is, or holds a dataset the profile reads."""
    from pathlib import Path

    from ..guard import Output, keep_apart
    from ..paper.profiles import DATA_ENV
    from ..paper.stages import default_root

    root = Path(artifacts) if artifacts else default_root(profile)
    names = DATA_ENV.get(profile.name, {})
    keep_apart([Output("--artifacts", root, "dir")], [(names.get(k, k), v) for k, v in profile.data],
               overwrite_flag=False)


def run(args) -> int:
    from ..errors import RelinkError
    from ..paper.profiles import get_profile
    from ..paper.runner import run_paper

    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise RelinkError(f"--set {item!r}: expected FIELD=VALUE")
        overrides[key.strip()] = value.strip()
    profile = get_profile(args.profile, overrides)
    _keep_data_apart(profile, args.artifacts)
    return run_paper(profile, args.chapters, book=args.book, force=args.force, strict=args.strict,
                     artifacts_root=args.artifacts)
