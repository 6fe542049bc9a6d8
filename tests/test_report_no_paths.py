"""No local path in any output of `relink audit` or `relink report`: a canary planted in the model's location
(meta.json's model spec, as `relink embed` records a local checkpoint) appears in no file written, no table cell,
no provenance record and nothing printed; the model is named by its architecture and weights fingerprint."""

import json

import pytest

from relink.embeddings import public_model_name
from test_report_fixtures import META, main, write_set

CANARY = "Zq7canaryX"


@pytest.mark.parametrize("spec", [f"tiny-vit:/srv/{CANARY}/weights/best.pt", f"local-dir:/home/{CANARY}/rung-3",
                                  f"models/{CANARY}/rung-3", f"C:\\{CANARY}\\ckpt.safetensors"])
def test_no_output_of_audit_or_report_holds_the_model_path(tmp_path, capsys, spec):
    emb = write_set(tmp_path / "emb", n=300, noise=1.0, seed=2, meta={**META, "model": spec})
    out = tmp_path / "out"
    out.mkdir()
    assert main(["audit", "--embeddings", str(emb), "--pools", "10,100", "--bootstrap", "100",
                 "--out", str(out / "audit.csv")]) == 0
    assert main(["audit", "--embeddings", str(emb), "--pools", "10", "--bootstrap", "100",
                 "--out", str(out / "audit.json")]) == 0
    assert main(["report", "--embeddings", str(emb), "--attacker-pool", "100", "--out", str(out / "r.html"),
                 "--json", str(out / "r.json"), "--audit", str(out / "r.csv")]) == 0
    printed = capsys.readouterr()
    texts = {p.name: p.read_text(errors="replace") for p in out.iterdir()}
    texts["stdout+stderr"] = printed.out + printed.err
    assert len(texts) >= 6  # the three tables, the page, its JSON, the printed lines, and any sidecar
    for name, text in texts.items():
        assert CANARY not in text, name
    named = json.loads(texts["r.json"])["threat_model"]["model"]
    assert META["weights_fingerprint"] in named and CANARY not in named


def test_public_names_keep_what_is_public():
    assert public_model_name("ViT-B-16:openai") == "ViT-B-16:openai"
    assert public_model_name("hf-hub:microsoft/BiomedCLIP") == "hf-hub:microsoft/BiomedCLIP"
    assert public_model_name("tiny-vit") == "tiny-vit"
    assert public_model_name("ViT-B-32:/data/x.pt", "abc") == "ViT-B-32 with a local checkpoint (weights abc)"
