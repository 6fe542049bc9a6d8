"""open_clip's trainer, with the project's small model configs registered.

``python -m open_clip_train.main`` only knows open_clip's built-in configs.
This wrapper registers ``relink/model_configs`` first (so ``--model
relink-vit-tiny`` works) and then hands every argument to
``open_clip_train.main.main`` unchanged; under ``torchrun`` each process does
the same::

    torchrun --nproc_per_node 4 -m relink.models.open_clip_train_wrapper \\
        --train-data train.csv --model relink-vit-tiny ...

Public models (``--model ViT-B-16 --pretrained openai``) do not need it. The
exit status is non-zero when the trainer returns an error code (it returns
-1, e.g. for an existing ``--name``, rather than raising).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from open_clip_train.main import main as train_main

    from .registry import register_project_configs

    register_project_configs()
    result = train_main(sys.argv[1:] if argv is None else list(argv))
    return 1 if isinstance(result, int) and result != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
