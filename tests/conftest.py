"""Test root: make the repository importable without installing it.

Triton reads TRITON_INTERPRET once, when it is first imported, and without a GPU its
interpreter is its only backend. Any test may import triton first (torch can, through its
own integrations), so the session sets it before anything runs; the backend tests then
exercise the triton kernels instead of skipping them. A machine with a GPU is left alone.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shrunk_store(tmp_path_factory) -> Path:
    """One artifact store for every tiny build of the real studies in a session
    (tests/common/test_recipes_build.py, tests/common/test_device.py): they plan the same
    shrunk params, so the second build restores what the first computed instead of training again."""
    return tmp_path_factory.mktemp("shrunk-store")
