"""Where DP heads start, and what the start and the trunk were trained on.

The guarantee covers the heads' training given a start and a trunk: a start learned without DP on the private
rows carries their memorisation into the released heads whatever the noise (measured: heads started from the
model's own at "epsilon = 0.09" gave a membership TPR of 0.58 at FPR 0.1, where DP allows about 0.11). So the
default start depends on no data: a seeded draw by open_clip's rule for projections (weights N(0, width^-1/2),
biases zero); ``--init SPEC`` starts from another model's heads, whose ``relink.json`` says what it saw.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import RelinkError
from ..models import trained_on

NOT_RECORDED = "not recorded"


def random_heads(like, seed: int = 0):
    """Heads shaped like ``like`` (``Heads(image, text)``), drawn from ``seed`` alone (see module doc)."""
    g = torch.Generator().manual_seed(int(seed))
    layers = {}
    for name in ("image", "text"):
        ref = getattr(like, name)
        layer = nn.Linear(ref.in_features, ref.out_features, bias=ref.bias is not None)
        with torch.no_grad():
            layer.weight.normal_(0.0, ref.in_features ** -0.5, generator=g)
            if layer.bias is not None:
                layer.bias.zero_()
        layers[name] = layer
    return type(like)(**layers)


def trunk_record(model_spec: str, declared: str | None = None) -> str:
    """What the trunk of ``model_spec`` was trained on: its own record, else ``declared``, else not recorded.

    A declaration cannot overrule a record that says the weights saw private rows.
    """
    own = trained_on.of_spec(model_spec)
    if declared is not None:
        if not trained_on.is_independent(declared):
            raise RelinkError(f"--trunk-trained-on must be 'public:NAME' or 'random-init', got {declared!r}")
        if own is not None and not trained_on.is_independent(own):
            raise RelinkError("--trunk-trained-on: the model's relink.json records that it was trained on private rows "
                              f"({own}); a declaration cannot overrule it")
        return declared
    return own or NOT_RECORDED


def starting_heads(model_heads, init: str | None = None, seed: int = 0) -> tuple[object, str]:
    """``(heads, record)``: a random start from ``seed`` (default), or the heads of the model ``init`` names."""
    if init is None:
        return random_heads(model_heads, seed), trained_on.RANDOM_INIT
    from ..models import load_model
    from ..models.heads import extract_heads

    heads = extract_heads(load_model(str(init)).model)
    for name in ("image", "text"):
        a, b = getattr(heads, name), getattr(model_heads, name)
        if (a.in_features, a.out_features) != (b.in_features, b.out_features):
            raise RelinkError(f"--init {init}: its {name} head maps {a.in_features} -> {a.out_features} features, the "
                              f"model's {b.in_features} -> {b.out_features}: heads of another architecture")
    return heads, trained_on.of_spec(str(init)) or NOT_RECORDED
