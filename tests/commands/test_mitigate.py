"""`relink mitigate` end to end: outputs, release status, secret noise, bad input, the --out guard, and a run
killed during its final write then re-run (the same result, nothing left behind)."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.sets import tiny_model_set, toy_set
from relink import embeddings as emb
from relink.cli import main
from relink.dp.apply import heads_fingerprint, load_heads
from relink.dp.spec import NOT_FOR_RELEASE

pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
QUICK = ["--epochs", "2", "--batch-size", "8", "--lr", "0.01"]


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    """A tiny real model, its embedding set, an external set and a valid outside bank."""
    root = tmp_path_factory.mktemp("tiny")
    ckpt, es_dir = tiny_model_set(80)
    loaded = emb.load(es_dir)
    ext = toy_set(n_patients=10, per_patient=2, seed=3, prefix="x", cohort="external")
    ext_dir = emb.save(emb.EmbeddingSet(ext.rows, loaded.image[:20], loaded.text[:20], loaded.image_trunk[:20],
                                        loaded.text_trunk[:20], {"model": str(ckpt)}), root / "external")
    rows = toy_set(n_patients=8, per_patient=2, seed=4, prefix="b", cohort="public").rows
    jitter = np.random.default_rng(0).standard_normal((16, loaded.image_trunk.shape[1])).astype(np.float32)
    bank_dir = emb.save(emb.EmbeddingSet(rows, loaded.image[20:36], loaded.text[20:36],
                                         loaded.image_trunk[20:36] + jitter, loaded.text_trunk[20:36], {}), root / "bank")
    return ckpt, es_dir, ext_dir, bank_dir


def run(capsys, *argv):
    try:
        rc = main(["mitigate", *map(str, argv)])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def heads_of(out: Path):
    return heads_fingerprint(load_heads(out / "heads.safetensors"))


def test_cli_mitigate_end_to_end(model_set, tmp_path, capsys):
    from relink.models import load_model
    from relink.models.heads import extract_heads, project

    ckpt, es_dir, ext_dir, _ = model_set
    out, study = tmp_path / "dp", tmp_path / "dp-study"
    rc, stdout, stderr = run(capsys, "--embeddings", es_dir, "--epsilon", 2, "--delta", 1e-4, *QUICK,
                             "--apply", ext_dir, "--out", out, "--study", study)
    assert rc == 0 and stderr == ""  # no warnings either (Opacus's divide-by-zero, secure-RNG notice)
    assert "PRV" in stdout and "for_release: true" in stdout  # a random start on a random-init trunk
    rep = json.loads((out / "privacy.json").read_text())
    for key in ("epsilon", "delta", "accountant", "rdp_epsilon", "noise_multiplier", "clip_norm", "sample_rate", "steps",
                "epochs", "privacy_unit", "noise_seed", "for_release", "release_reason", "trained_on", "bank_note",
                "provenance", "spec"):
        assert key in rep
    assert rep["noise_seed"] == "secret" and rep["for_release"] is True and "seed" not in rep
    assert rep["trained_on"] == {"start": "random-init", "trunk": "random-init"}
    assert rep["privacy_unit"] == "pair" and rep["spec"]["epochs"] == 2
    full = json.loads((study / "privacy.json").read_text())
    assert "training_losses" in full and "n_units" in full and "not for release" in full["study_note"]

    def no_constants(name):
        raise AssertionError(f"{name} is not valid JSON")

    for f in [*out.rglob("*.json"), *study.rglob("*.json")]:  # valid JSON everywhere: no NaN or Infinity
        json.loads(f.read_text(), parse_constant=no_constants)
    heads = load_heads(out / "heads.safetensors")
    reloaded = extract_heads(load_model(str(out / "checkpoint")).model)
    assert heads_fingerprint(heads) == heads_fingerprint(reloaded)
    assert heads_fingerprint(heads) != heads_fingerprint(extract_heads(load_model(str(ckpt)).model))
    for name, src in (("emb", es_dir), ("external", ext_dir)):
        new, old = emb.load(study / "embeddings" / name), emb.load(src)
        np.testing.assert_allclose(new.image, project(heads.image, old.image_trunk), atol=1e-5)
        assert new.meta["model"] == str(out / "checkpoint") and new.meta["heads"]["accountant"] == "prv"
        assert new.meta["for_release"] is False and "not for release" in new.meta["study_note"]
        assert (new.rows["pair_id"] == old.rows["pair_id"]).all()


def test_reproducible_noise_replays_and_every_output_says_not_for_release(model_set, tmp_path, capsys):
    _, es_dir, _, _ = model_set
    outs = [tmp_path / "a", tmp_path / "b"]
    lines = []
    for out in outs:
        rc, stdout, _ = run(capsys, "--embeddings", es_dir, "--epsilon", 2, "--delta", 1e-4, *QUICK,
                            "--accountant", "rdp", "--reproducible-noise", 7, "--out", out, "--study", f"{out}-study")
        assert rc == 0
        lines.append(stdout)
    assert heads_of(outs[0]) == heads_of(outs[1])
    a = emb.load(tmp_path / "a-study" / "embeddings" / "emb")
    np.testing.assert_array_equal(a.image, emb.load(tmp_path / "b-study" / "embeddings" / "emb").image)
    assert "for_release: false" in lines[0] and NOT_FOR_RELEASE[1:] in lines[0]
    rep = json.loads((outs[0] / "privacy.json").read_text())
    assert rep["for_release"] is False and NOT_FOR_RELEASE in rep["release_note"].lower() and rep["noise_seed"] == 7
    ckpt_meta = json.loads((outs[0] / "checkpoint" / "relink.json").read_text())["relink_heads"]
    assert ckpt_meta["for_release"] is False and NOT_FOR_RELEASE in ckpt_meta["release_note"].lower()
    assert a.meta["for_release"] is False


def test_default_noise_differs_run_to_run_and_its_seed_is_written_nowhere(model_set, tmp_path, capsys, monkeypatch):
    _, es_dir, _, _ = model_set
    drawn = []

    def spy(bits):
        drawn.append(secrets.SystemRandom().getrandbits(bits))
        return drawn[-1]

    monkeypatch.setattr("relink.dp.train.secrets.randbits", spy)
    outs, printed = [tmp_path / "a", tmp_path / "b"], ""
    for out in outs:
        rc, stdout, stderr = run(capsys, "--embeddings", es_dir, "--epsilon", 2, "--delta", 1e-4, *QUICK,
                                 "--accountant", "rdp", "--out", out)
        assert rc == 0
        printed += stdout + stderr
    assert len(drawn) == 2 and heads_of(outs[0]) != heads_of(outs[1])
    for seed in drawn:
        needles = [str(seed).encode(), f"{seed:x}".encode(), str(seed + 1).encode()]
        assert not any(n.decode() in printed for n in needles)
        for f in (p for out in outs for p in out.rglob("*") if p.is_file()):
            data = f.read_bytes()
            assert not any(n in data for n in needles), f


BAD = [
    (["--epsilon", "1e6", "--delta", "1e-4"], "--epsilon"),
    (["--epsilon", "inf", "--delta", "1e-4"], "--epsilon"),
    (["--epsilon", "0", "--delta", "1e-4"], "--epsilon"),
    (["--epsilon", "1", "--delta", "1"], "--delta"),
    (["--epsilon", "1", "--delta", "nan"], "--delta"),
    (["--epsilon", "1", "--delta", "0.5"], "largest delta allowed is 0.00313"),
    (["--delta", "1e-4"], "--epsilon"),
    (["--non-private", "--lr", "-1"], "--lr"),
    (["--non-private", "--lr", "nan"], "--lr"),
    (["--non-private", "--temperature", "0"], "--temperature"),
    (["--non-private", "--clip-norm", "0"], "--clip-norm"),
    (["--non-private", "--epochs", "0"], "--epochs"),
    (["--non-private", "--epochs", "1.5"], "--epochs"),
    (["--non-private", "--batch-size", "0"], "--batch-size"),
    (["--non-private", "--bank-size", "0"], "--bank-size"),
    (["--non-private", "--bank-size", "-5"], "--bank-size"),
    (["--non-private", "--reproducible-noise", "-1"], "--reproducible-noise"),
    (["--non-private", "--epsilon", "1"], "--non-private"),
    (["--epsilon", "1", "--delta", "1e-4", "--model", "relink-vit-tiny"], "--model relink-vit-tiny"),
]


@pytest.mark.parametrize("argv,named", BAD)
def test_bad_input_exits_2_with_one_line_naming_the_option(model_set, tmp_path, capsys, argv, named):
    _, es_dir, _, _ = model_set
    out = tmp_path / "o"
    rc, stdout, stderr = run(capsys, "--embeddings", es_dir, *argv, "--out", out)
    lines = stderr.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and named in lines[0] and "Traceback" not in stderr, stderr
    assert lines[0].startswith("relink mitigate: error:")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_wrong_model_message_names_the_options_as_given(model_set, tmp_path, capsys):
    _, es_dir, _, _ = model_set
    rc, _, stderr = run(capsys, "--embeddings", es_dir, "--non-private", "--model", "relink-vit-tiny", "--out", tmp_path / "o")
    assert rc == 2 and f"image head of --model relink-vit-tiny does not reproduce {es_dir}/image.npy" in stderr


def test_a_nan_trunk_row_is_named_not_blamed_on_the_model(model_set, tmp_path, capsys):
    _, es_dir, _, _ = model_set
    es = emb.load(es_dir, mmap=False)
    trunk = np.array(es.image_trunk)
    trunk[5, 3] = np.nan
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in Path(es_dir).iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    np.save(bad / "image_trunk.npy", trunk)
    rc, _, stderr = run(capsys, "--embeddings", bad, "--non-private", "--out", tmp_path / "o")
    assert rc == 2 and "image_trunk.npy row 5" in stderr and "wrong --model" not in stderr


def test_bank_must_lie_outside_the_evaluated_rows(model_set, tmp_path, capsys):
    ckpt, es_dir, ext_dir, bank_dir = model_set
    test_rows = tmp_path / "test_rows"
    emb.save(emb.load(es_dir).split("test"), test_rows)
    rc, _, stderr = run(capsys, "--embeddings", es_dir, "--bank", test_rows, "--non-private", "--out", tmp_path / "o")
    n = len(emb.load(test_rows))
    assert rc == 2 and f"overlaps the non-train rows of {es_dir}: {n} shared pair(s)" in stderr
    rc, _, stderr = run(capsys, "--embeddings", es_dir, "--bank", bank_dir, "--apply", bank_dir, "--non-private",
                        "--out", tmp_path / "o")
    assert rc == 2 and f"overlaps --apply {bank_dir}: 16 shared pair(s), 8 shared patient(s)" in stderr
    rc, _, stderr = run(capsys, "--embeddings", es_dir, "--bank", bank_dir, "--apply", es_dir, "--non-private",
                        "--out", tmp_path / "o")  # --embeddings again as --apply: named as --apply
    assert rc == 2 and f"--apply {es_dir}: shares pairs with --embeddings" in stderr
    assert not (tmp_path / "o").exists()
    rc, _, stderr = run(capsys, "--embeddings", es_dir, "--bank", bank_dir, "--apply", ext_dir, "--non-private",
                        "--epochs", 1, "--bank-size", 1000, "--out", tmp_path / "o", "--study", tmp_path / "s")
    # a bank-size beyond the bank: all of it (the count is in the study record; the bank is named in the release)
    assert rc == 0 and json.loads((tmp_path / "s" / "privacy.json").read_text())["n_bank"] == 16
    assert bank_dir.name in json.loads((tmp_path / "o" / "privacy.json").read_text())["bank_note"]


def test_out_guard_never_touches_a_users_file_and_replaces_its_own_output(model_set, tmp_path, capsys):
    _, es_dir, _, _ = model_set
    base = ["--embeddings", es_dir, "--non-private", "--epochs", 1]
    thesis = tmp_path / "writing"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\chapter{mine}\n")
    rc, _, stderr = run(capsys, *base, "--out", thesis)
    assert rc == 2 and "not a relink mitigate output" in stderr and "--overwrite" in stderr
    assert [p.name for p in thesis.iterdir()] == ["thesis.tex"] and (thesis / "thesis.tex").read_text() == "\\chapter{mine}\n"
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    rc, _, stderr = run(capsys, *base, "--out", notes)
    assert rc == 2 and "is a file" in stderr and notes.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "writing"]  # nothing moved or added
    out = tmp_path / "dp"
    assert run(capsys, *base, "--out", out)[0] == 0
    first = heads_of(out)
    assert run(capsys, *base, "--out", out)[0] == 0  # its own earlier output: replaced
    assert heads_of(out) != first  # secret noise (here: shuffling) differs
    assert run(capsys, *base, "--overwrite", "--out", thesis)[0] == 0  # asked to replace: replaced
    assert (thesis / "privacy.json").is_file() and not (thesis / "thesis.tex").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


# SIGKILL `relink mitigate` during its final write, then re-run: the same result and nothing left behind.
def argv(es_dir, out):
    return ["mitigate", "--embeddings", str(es_dir), "--epsilon", "2", "--delta", "1e-4", "--accountant", "rdp",
            "--epochs", "1", "--batch-size", "8", "--reproducible-noise", "3", "--out", str(out),
            "--study", f"{out}-study"]


def snapshot(out: Path) -> dict:
    """What the output says, as values: tensors and arrays (safetensors files differ byte-wise across saves)."""
    from safetensors.numpy import load_file

    privacy = json.loads((out / "privacy.json").read_text())
    privacy.pop("provenance")
    arrays = {f"heads/{k}": v for k, v in load_file(out / "heads.safetensors").items()}
    arrays.update({f"checkpoint/{k}": v for k, v in load_file(out / "checkpoint" / "open_clip_model.safetensors").items()})
    study = out.parent / f"{out.name}-study"  # what is derived from the private rows: the re-projected set
    for name in ("image", "text", "image_trunk", "text_trunk"):
        arrays[f"emb/{name}"] = np.load(study / "embeddings" / "emb" / f"{name}.npy")
    files = sorted(str(p.relative_to(out.parent)).replace(out.name, "OUT", 1)
                   for p in [*out.rglob("*"), *study.rglob("*")])
    return {"privacy": privacy, "arrays": arrays, "files": files}


def assert_same(a: dict, b: dict) -> None:
    assert a["privacy"] == b["privacy"] and a["files"] == b["files"]
    assert a["arrays"].keys() == b["arrays"].keys()
    for k in a["arrays"]:
        np.testing.assert_array_equal(a["arrays"][k], b["arrays"][k], err_msg=k)


def temporaries(out: Path, pid: int | None = None) -> list[Path]:
    prefix = f".{out.name}." + (f"{pid}." if pid else "")
    return [p for p in out.parent.iterdir() if p.name.startswith(prefix)]


def kill_during_write(es_dir, out: Path) -> None:
    """Start the command, SIGKILL it once its temporary output folder holds the first written file."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    for _ in range(3):  # the write takes a fraction of a second: retry if the rename won the race
        proc = subprocess.Popen([sys.executable, "-m", "relink", *argv(es_dir, out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            tmp = [p for p in temporaries(out, proc.pid) if p.name.endswith(".tmp") and (p / "heads.safetensors").exists()]
            if tmp:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and temporaries(out, proc.pid):
            return
    pytest.fail("could not kill relink mitigate during its write")


@pytest.mark.slow
def test_sigkill_during_the_write_then_rerun_gives_the_same_output_and_no_leftovers(tmp_path, capsys):
    _, es_dir = tiny_model_set(80)
    ref = tmp_path / "ref"
    assert main(argv(es_dir, ref)) == 0
    expected = snapshot(ref)

    fresh = tmp_path / "fresh"  # killed while writing a new output
    kill_during_write(es_dir, fresh)
    assert not fresh.exists()
    assert main(argv(es_dir, fresh)) == 0
    assert_same(snapshot(fresh), expected)
    assert temporaries(fresh) == []

    kill_during_write(es_dir, ref)  # killed while replacing its own earlier output: that output stays whole
    assert_same(snapshot(ref), expected)
    assert main(argv(es_dir, ref)) == 0
    assert_same(snapshot(ref), expected)
    assert temporaries(ref) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "fresh-study", "ref", "ref-study"]
