import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The models here are tiny: one thread is faster and leaves the other core to parallel jobs.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
