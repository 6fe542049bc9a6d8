"""Run profiles of the paper: which cohorts, which model ladder, how much of everything.

``synthetic`` (default: the generator, N = 10,000 a real pool), ``smoke`` (tiny, for tests), ``study`` (the
generator at the study's own sizes, capped to run in about 90 minutes on 2 cores: :meth:`Profile.caps`),
``mimic`` and ``chexpert-plus`` (credentialed data from the paths in :data:`DATA_ENV`'s environment
variables, never from code). ``RELINK_LADDER`` or ``--set ladder=...`` replaces the ladder (model specs,
weakest first, ``SPEC`` or ``NAME=SPEC``); ``--set key=value`` overrides any other field.

A profile travels to the chapters as one JSON record (:meth:`Profile.record`) without data paths; a
credentialed profile reads them from the environment again.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import RelinkError

@dataclass(frozen=True)
class Profile:
    """Every knob of one paper run. Fields are plain values so they hash and print."""

    name: str
    credentialed: bool = False
    # cohorts (synthetic profiles)
    internal_patients: int = 0
    external_patients: int = 0
    image_size: int = 64
    splits: tuple[float, float, float] = (0.5, 0.1, 0.4)
    synth_seed: int = 2606
    # probabilities of 1, 2, ... studies per patient; () keeps the generator's own table (mean ~2.6)
    study_counts: tuple[float, ...] = ()
    # the synthetic specialization ladder
    train_config: str = "relink-vit-tiny"
    train_epochs: int = 3
    train_batch_size: int = 128
    train_lr: float = 5e-4
    train_rungs: int = 3
    train_seed: int = 0
    # at most this many pairs of the training split train the ladder (a seeded subset); 0: all of them
    train_max_pairs: int = 0
    ladder: tuple[str, ...] = ()  # model specs ("SPEC" or "NAME=SPEC") replacing the default ladder
    embed_batch_size: int = 256
    # at most this many pairs of the internal training split are embedded by the strongest rung (a seeded
    # subset; what the DP heads and the probes train on); 0: all of them
    fit_max_pairs: int = 0
    # the audit
    eval_split: str = "test"
    # credentialed cohorts: "official" splits, or "study": a seeded patient-disjoint re-split whose
    # held-out part has about `heldout_pairs` pairs (the study's 43,793 MIMIC-CXR test pairs)
    split: str = "official"
    heldout_pairs: int = 43793
    split_seed: int = 0
    pools: tuple[Any, ...] = (10, 100, 1000, 10000, "full")
    ks: tuple[int, ...] = (1, 5, 10)
    n_boot: int = 1000
    audit_seed: int = 0
    # DP mitigation
    epsilon: float = 0.34
    # None: derived from the run's own n private units, 1/(10 n) rounded down (relink.dp.accounting.default_delta)
    delta: float | None = None
    accountant: str = "prv"
    epsilons: tuple[Any, ...] = (0.1, 0.34, 1.0, 3.0, 8.0, None)
    dp_epochs: int = 10
    dp_batch_size: int = 256
    dp_lr: float = 1e-2
    dp_clip_norm: float = 1.0
    dp_temperature: float = 0.07
    dp_privacy_unit: str = "pair"
    dp_seed: int = 0  # reproducible noise: the paper is a study, its heads are not for release
    # utility
    probe_seed: int = 0
    # real data (credentialed profiles), filled from the environment
    data: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def record(self) -> dict[str, Any]:
        """Every field as JSON values, what a chapter receives and publishes: no data paths, and a custom
        ladder named by its rungs (:meth:`from_record` reads both from the environment again)."""
        from ..io import canonical

        record = canonical(self.as_dict())
        record.pop("data")
        record["ladder"] = [public_rung(text) for text in self.ladder]
        return record

    @staticmethod
    def from_record(record: dict[str, Any] | str, environ: dict[str, str] | None = None) -> "Profile":
        """The profile a :meth:`record` (or its JSON text) describes; data paths from the environment."""
        import json

        record = dict(json.loads(record) if isinstance(record, str) else record)
        base = get_profile(record.pop("name"), environ=environ)
        changes = {}
        for f in dataclasses.fields(Profile):
            if f.name in record and f.name not in FIXED + ("ladder",):  # the ladder comes from the environment
                value = record[f.name]
                changes[f.name] = tuple(value) if isinstance(value, list) else value
        return _checked(dataclasses.replace(base, **changes))

    def caps(self) -> tuple[str, ...]:
        """Every place where this profile does less than the study did, one sentence each, read from the fields
        (a ``--set`` that lifts a cap removes its sentence)."""
        out = []
        if self.train_max_pairs:
            out.append(f"the ladder trains on a seeded subset of at most {self.train_max_pairs:,} pairs of the "
                       f"training split ({self.train_epochs} epochs), not on the whole split")
        if self.fit_max_pairs:
            out.append(f"the strongest model embeds at most {self.fit_max_pairs:,} pairs of the training split (a "
                       "seeded subset): the DP heads, their no-DP control and the probes train on those pairs only")
        default = PROFILES["synthetic"].epsilons if "synthetic" in PROFILES else ()
        if not self.credentialed and set(self.epsilons) < set(default):
            shown = ", ".join("no DP" if e is None else f"{e:g}" for e in self.epsilons)
            full = ", ".join("no DP" if e is None else f"{e:g}" for e in default)
            out.append(f"the epsilon sweep is reduced to {shown} (the default profile's: {full})")
        return tuple(out)

    @property
    def n_target(self) -> Any:
        """The headline pool size: 10,000, or the largest finite pool requested."""
        finite = [p for p in self.pools if p != "full"]
        return 10000 if 10000 in finite else max(finite)


PROFILES: dict[str, Profile] = {
    "synthetic": Profile(
        name="synthetic",
        internal_patients=12000,
        external_patients=2000,
    ),
    "smoke": Profile(
        name="smoke",
        internal_patients=240,
        external_patients=60,
        train_epochs=2,
        train_batch_size=64,
        train_rungs=3,
        embed_batch_size=128,
        pools=(10, 100, "full"),
        n_boot=50,
        epsilons=(0.34, 8.0, None),
        dp_epochs=2,
        dp_batch_size=64,
    ),
    # The study's sizes: for synth_seed 2606 these patients, studies per patient (mean ~3.2) and split fractions
    # give exactly 406,241 pairs, 43,793 held-out and 29,296 external pairs (checked by the profile's test);
    # the caps (Profile.caps) keep it within ~90 minutes on 2 CPU cores.
    "study": Profile(
        name="study",
        internal_patients=117648,
        external_patients=9156,
        splits=(0.872399, 0.011602, 0.115999),
        study_counts=(0.196252, 0.20345, 0.183413, 0.153101, 0.143773, 0.120012),
        train_max_pairs=16000,
        fit_max_pairs=20000,
        epsilons=(0.34, None),
    ),
    # MIMIC-CXR: the study's delta = 6e-6 gives n x delta ~ 0.3 even per patient, so delta is derived from n and
    # stated per patient; the official test split is too small for pools of 10,000, so the default re-split
    # holds out a set the study's size.
    "mimic": Profile(name="mimic", credentialed=True, embed_batch_size=128, dp_epochs=10, dp_privacy_unit="patient",
                     split="study"),
    # CheXpert Plus releases train and valid only: a patient-disjoint re-split gives the held-out
    # test set (the study's 29,296 external pairs in size) and keeps "valid"-sized data as the bank.
    "chexpert-plus": Profile(name="chexpert-plus", credentialed=True, embed_batch_size=128, dp_epochs=10,
                             split="study", heldout_pairs=29296),
}

DATA_ENV = {
    "mimic": {"mimic_images": "RELINK_MIMIC_IMAGES", "mimic_reports": "RELINK_MIMIC_REPORTS",
              "chexpert_plus_root": "RELINK_CHEXPERT_PLUS_ROOT"},
    "chexpert-plus": {"chexpert_plus_root": "RELINK_CHEXPERT_PLUS_ROOT"},
}
REQUIRED_DATA = {"mimic": ("mimic_images", "mimic_reports"), "chexpert-plus": ("chexpert_plus_root",)}


def _coerce(current: Any, text: str) -> Any:
    if current is None:  # a field whose default is derived (delta): a number, or none to derive it again
        return None if text.strip().lower() == "none" else float(text)
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, tuple):
        return tuple(_item(t.strip()) for t in text.split(",") if t.strip())
    return text


def _item(text: str) -> Any:
    """One item of a list field: ``full``, none, an int, a float, or the text."""
    if text in ("full", "none", "None"):
        return None if text.lower() == "none" else text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


FIXED = ("name", "credentialed", "data")  # set by the profile itself, never by --set


def public_rung(text: str) -> str:
    """How a custom rung is published: its name, or a hub/built-in spec, never a local path."""
    name, sep, spec = text.partition("=")
    if sep:
        return name.strip()
    return os.path.basename(text.rstrip("/")) if (os.sep in text or os.path.exists(text)) else text


def _ladder(text: str) -> tuple[str, ...]:
    """``--set ladder=`` / ``RELINK_LADDER``: specs separated by commas (or new lines), weakest first."""
    return tuple(t.strip() for t in text.replace("\n", ",").split(",") if t.strip())


#: profile field -> (the spec it feeds, that spec's field): checked by the spec itself, before any work
SPEC_FIELDS = {
    "pools": ("audit", "pools"), "ks": ("audit", "ks"), "n_boot": ("audit", "n_boot"),
    "audit_seed": ("audit", "random_state"), "epsilon": ("dp", "epsilon"), "delta": ("dp", "delta"),
    "accountant": ("dp", "accountant"), "dp_epochs": ("dp", "epochs"), "dp_batch_size": ("dp", "batch_size"),
    "dp_lr": ("dp", "lr"), "dp_clip_norm": ("dp", "clip_norm"), "dp_temperature": ("dp", "temperature"),
    "dp_privacy_unit": ("dp", "privacy_unit"), "dp_seed": ("dp", "reproducible_noise"),
}


def _checked(profile: Profile) -> Profile:
    """Every field that feeds a spec, checked by that spec, so that a bad ``--set`` fails at once and
    is named as the user typed it (``--set dp_lr``, not the spec's ``--lr``)."""
    import dataclasses as dc

    from ..dp.spec import MitigationSpec
    from ..retrieval.spec import AuditSpec

    if profile.split not in ("official", "study"):
        raise RelinkError(f"--set split={profile.split}: choose official or study")
    specs = {"audit": AuditSpec, "dp": MitigationSpec}
    runs = [(which, {name: getattr(profile, field) for field, (w, name) in SPEC_FIELDS.items() if w == which})
            for which in specs]
    runs += [("dp", {**runs[1][1], "epsilon": eps}) for eps in profile.epsilons if eps is not None]
    for which, values in runs:
        if which == "dp" and values.get("delta") is None:
            values = {**values, "delta": 1e-12}  # derived from the data when the run starts; checked then
        try:
            specs[which](**values)
        except RelinkError as exc:
            message = str(exc)
            flags = {f.metadata["relink"]["flag"]: f.name for f in dc.fields(specs[which]) if "relink" in f.metadata}
            flag = message.split()[0].rstrip(":") if message.startswith("--") else ""
            field = next((k for k, (w, n) in SPEC_FIELDS.items() if w == which and n == flags.get(flag)), None)
            if field == "epsilon" and values["epsilon"] != profile.epsilon:
                field = "epsilons"
            raise RelinkError(f"--set {field}{message[len(flag):]}" if field else f"profile: {message}") from None
    return profile


#: the fields that count rows or patients (what :func:`scaled` divides)
SIZE_FIELDS = ("internal_patients", "external_patients", "train_max_pairs", "fit_max_pairs")


def scaled(profile: Profile, divisor: int) -> Profile:
    """``profile`` with every size (:data:`SIZE_FIELDS`) divided by ``divisor`` (at least 1 where it was set),
    for tests; finite pools above the largest one divided by ``divisor`` are left out."""
    if divisor == 1:
        return profile
    if divisor < 1:
        raise RelinkError(f"cannot divide a profile's sizes by {divisor}")
    finite = [p for p in profile.pools if p != "full"]
    pools = tuple(p for p in profile.pools if p == "full" or p <= max(finite) / divisor) if finite else profile.pools
    return dataclasses.replace(profile, pools=pools or profile.pools, **{
        f: max(1, getattr(profile, f) // divisor) for f in SIZE_FIELDS if getattr(profile, f)})


def get_profile(name: str, overrides: dict[str, str] | None = None, environ: dict[str, str] | None = None) -> Profile:
    """The named profile with ``overrides`` (``field -> text``) and, for real data, paths from the environment."""
    if name not in PROFILES:
        raise RelinkError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    environ = os.environ if environ is None else environ
    profile = PROFILES[name]
    changes: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(Profile)}
    if environ.get("RELINK_LADDER"):
        changes["ladder"] = _ladder(environ["RELINK_LADDER"])
    for key, text in (overrides or {}).items():
        key = key.replace("-", "_")
        if key not in known or key in FIXED:
            raise RelinkError(f"--set {key}: not a profile field (fields: {', '.join(sorted(known - set(FIXED)))})")
        if key == "ladder":
            changes[key] = _ladder(text)
            continue
        try:
            changes[key] = _coerce(getattr(profile, key), text)
        except ValueError:
            raise RelinkError(f"--set {key}={text}: cannot read {text!r} as {type(getattr(profile, key)).__name__}") from None
    if profile.credentialed:
        data = {key: environ[var] for key, var in DATA_ENV[name].items() if environ.get(var)}
        missing = [DATA_ENV[name][k] for k in REQUIRED_DATA[name] if k not in data]
        if missing:
            raise RelinkError(f"profile {name!r} needs the environment variable(s) {', '.join(missing)} (see the reproducibility appendix)")
        changes["data"] = tuple(sorted(data.items()))
    return _checked(dataclasses.replace(profile, **changes))
