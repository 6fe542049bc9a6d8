"""Shared test set-up: offline hubs, small thread counts, deterministic seeds."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


# The longest files first: under `pytest -n 2 --dist loadfile` (make test) a worker takes whole files in
# collection order, so the smoke paper starts at once beside the rest instead of running alone at the end.
FIRST = ("paper/test_smoke.py", "paper/test_credentialed.py", "retrieval/test_interval_coverage.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    here = Path(__file__).parent
    items.sort(key=lambda item: rank.get(item.path.relative_to(here).as_posix(), len(FIRST)))  # stable: the rest keep their order
