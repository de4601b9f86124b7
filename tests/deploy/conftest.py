"""What the deployment tests share: one release archive of this tree, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import deploy
from tests.support.processes import ROOT


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/wharf-release.tar as `make release` builds it, from this checkout."""
    return deploy.build_release(ROOT, tmp_path_factory.mktemp("release") / "wharf-release.tar")
