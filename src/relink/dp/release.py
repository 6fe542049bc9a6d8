"""What a DP run may release, and the two folders it writes: the release and the study.

:func:`status`: the heads are releasable only when the run is private, its noise secret, and both the start and
the trunk are declared independent of the private rows (``random-init`` or ``public:<name>``); otherwise epsilon
still describes the heads' training *given* that start and trunk, but not the model.

* the **release folder** (``--out``): ``heads.safetensors``, ``privacy.json`` (:data:`RELEASE_FIELDS` only) and,
  when the trunk may be released, ``checkpoint/``. Nothing in it is computed from the private rows other than
  through the DP heads: no embeddings of private rows, no training losses, no exact counts;
* the **study folder** (``--study``, optional): everything derived from the private rows, marked
  :data:`STUDY_NOTE`: the full run report, ``embeddings/<name>/`` (what ``relink report --mitigated`` reads) and,
  when the trunk may not be released, the checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..models import trained_on as records
from .spec import NO_GUARANTEE, NOT_FOR_RELEASE, MitigationSpec

#: The fields of the release folder's privacy.json (everything else stays in the study folder).
RELEASE_FIELDS = ("private", "epsilon", "target_epsilon", "delta", "privacy_unit", "accountant", "prv_epsilon",
                  "rdp_epsilon", "noise_multiplier", "sample_rate", "steps", "epochs", "clip_norm", "lr", "optimizer",
                  "temperature", "grad_sample_mode", "loss", "noise_seed", "heads_fingerprint", "trained_on",
                  "bank_note", "for_release", "release_reason", "release_note", "spec")
STUDY_NOTE = ("derived from the private rows (their embeddings, losses and exact counts): for study, not for release; "
              "it is not covered by the guarantee")
BANK_NOTE = ("the negative bank ({bank}) is used without differential privacy: its patients get no guarantee, "
             "so the bank should be public or external data")


def bank_note(bank: str) -> str:
    return BANK_NOTE.format(bank=bank)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _part(record: str) -> str:
    if record.startswith(records.PRIVATE):
        return "was trained without DP on private rows"
    return "records nothing about its training data"


def status(spec: MitigationSpec, start: str, trunk: str, rows: str) -> tuple[bool, str]:
    """``(for_release, release_reason)`` for a run whose start and trunk are recorded as ``start`` / ``trunk``
    (``rows``: the ``private:<fingerprint>`` record of the private rows, to say "these rows")."""
    if not spec.private:
        return False, NO_GUARANTEE + "."
    reasons = []
    for what, record in (("trunk", trunk), ("starting heads", start)):
        if records.is_independent(record):
            continue
        part = "was trained on these rows without DP" if record == rows else _part(record)
        reasons.append(f"the {what} {part} ({record})")
    if reasons:
        return False, (f"{_sentence('; '.join(reasons))}: epsilon covers the heads' training given that "
                       f"{'trunk and start' if len(reasons) == 2 else 'trunk' if 'trunk' in reasons[0] else 'start'}, "
                       "not the model.")
    if not spec.for_release:
        return False, _sentence(NOT_FOR_RELEASE) + "."
    hub = (" (public as its name or --trunk-trained-on declares it: if it was fine-tuned on these rows, it is not)"
           if trunk.startswith(records.PUBLIC) else "")
    return True, (f"The heads start from {start} and the trunk is {trunk}{hub}, neither trained on the private rows, "
                  "and the noise is secret: epsilon covers the released heads (not the negative bank's patients).")


UNDISCLOSED = records.PRIVATE + "undisclosed"
_FINGERPRINT = re.compile(re.escape(records.PRIVATE) + r"[0-9a-f]{8,}")


def undisclosed(obj: Any) -> Any:
    """``obj`` with every ``private:<fingerprint>`` record replaced by ``private:undisclosed``.

    A fingerprint of the private rows' ids is computed from them without DP:
    an adversary who knows every row but one can test membership against it.
    The release keeps that a start or trunk saw private rows, not which.
    """
    if isinstance(obj, str):
        return _FINGERPRINT.sub(UNDISCLOSED, obj)
    if isinstance(obj, dict):
        return {k: undisclosed(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [undisclosed(v) for v in obj]
    return obj


def release_record(report: dict[str, Any]) -> dict[str, Any]:
    """The release folder's privacy.json: :data:`RELEASE_FIELDS` of the run report, fingerprints undisclosed."""
    return undisclosed({k: report.get(k) for k in RELEASE_FIELDS})


def write(result, out: str | os.PathLike, study: str | os.PathLike | None = None) -> Path:
    """Write ``result`` (a :class:`relink.dp.service.Mitigation`): the release folder ``out``, and ``study`` if given
    (first, so that a failure leaves no release without its study), each atomically."""
    from .. import embeddings as emb
    from ..io import atomic_dir, json_safe, mark_output, write_json
    from ..models.registry import weights_fingerprint
    from ..provenance import stamp
    from .apply import apply_heads, save_heads, write_checkpoint

    report = result.report
    trunk_public = records.is_independent(report["trained_on"]["trunk"])
    provenance = stamp(command="mitigate", base_weights_fingerprint=result.model.fingerprint)
    summary = {k: report.get(k) for k in ("private", "accountant", "epsilon", "rdp_epsilon", "delta",
                                          "noise_multiplier", "clip_norm", "privacy_unit", "heads_fingerprint",
                                          "noise_seed", "for_release", "release_reason", "release_note", "trained_on")}
    # The model with the new heads saw the private rows (through DP): a later run may not start from it as
    # if it were independent of them.
    ckpt_extra = json_safe({"relink_heads": summary, "trained_on": report["private_rows"]})

    def checkpoint(folder: Path, released: bool = False) -> str:
        write_checkpoint(result.model, result.heads, folder / "checkpoint",
                         extra=undisclosed(ckpt_extra) if released else ckpt_extra)
        return weights_fingerprint(result.model.model)  # the model now carries the new heads

    out = Path(out)
    if study is not None:
        study = Path(study)
        with atomic_dir(study) as tmp:
            write_json(tmp / "privacy.json", {**report, "study_note": STUDY_NOTE, "provenance": provenance})
            fp = None if trunk_public else checkpoint(tmp)
            for name, es in result.sets:
                extra = {"heads": summary, "weights_fingerprint": fp, "study_note": STUDY_NOTE,
                         "model": str((out if trunk_public else study) / "checkpoint"),
                         "for_release": False, "release_note": STUDY_NOTE}
                emb.save(apply_heads(es, result.heads, json_safe(extra)), tmp / "embeddings" / name)
            mark_output(tmp, "mitigate")
    with atomic_dir(out) as tmp:
        save_heads(result.heads, tmp / "heads.safetensors")
        write_json(tmp / "privacy.json", {**release_record(report), "provenance": provenance})
        if trunk_public:
            checkpoint(tmp, released=True)
        if not report["for_release"]:  # seen by whoever opens the folder, not only by readers of privacy.json
            (tmp / "NOT_FOR_RELEASE.txt").write_text(undisclosed(report["release_reason"]) + "\n")
        mark_output(tmp, "mitigate")
    return out
