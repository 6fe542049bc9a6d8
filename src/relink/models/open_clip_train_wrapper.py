"""open_clip's trainer, with the project's small model configs registered.

Registers ``relink/model_configs`` (so ``--model relink-vit-tiny`` works), then hands every argument
to ``open_clip_train.main.main``. Exits non-zero when the trainer returns an error code (it returns
-1 rather than raising).
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
