"""SIGKILL `relink mitigate` during its final write, then re-run: the same result and nothing left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dp_fixtures import tiny_model_set
from relink import embeddings as emb
from relink.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")]


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
