import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # Tiny models on a shared 2-core machine: more intra-op threads only add contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
