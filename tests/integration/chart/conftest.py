"""Chart tests need the pinned helm binary that `make helm` builds (mk/chart.mk)."""

import pytest

from localcluster.helm import pinned_helm_path


@pytest.fixture(autouse=True, scope="session")
def helm_binary() -> None:
    path = pinned_helm_path()
    if not path.is_file():
        pytest.fail(f"helm is not built at {path}: run `make helm` (the integration target depends on it)")
