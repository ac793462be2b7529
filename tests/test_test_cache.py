"""The test run's own model cache: one directory, shared by every import of conftest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_of_conftest_shares_the_runs_cache():
    import conftest  # as pytest imported it

    from tests import conftest as again  # as test modules import it: a second module object

    assert again.TEST_CACHE == conftest.TEST_CACHE
    assert os.environ["CLIPCLS_CACHE"] == str(conftest.TEST_CACHE)
    # a child process that imports the helpers (as the fault-injection scripts do) makes no cache of its own
    code = "import os; from tests import conftest; print(conftest.TEST_CACHE, os.environ['CLIPCLS_CACHE'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(conftest.TEST_CACHE)] * 2
