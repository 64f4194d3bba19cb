import pytest
import torch


def pytest_collection_modifyitems(config, items):
    # Everything here needs CUDA; without it the folder is skipped, not failed.
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "tests/gpu/" in str(item.fspath):
            item.add_marker(skip)
