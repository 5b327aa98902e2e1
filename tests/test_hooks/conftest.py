"""Fixtures of the hook tests."""
import pytest
import torch


@pytest.fixture(scope='package', autouse=True)
def one_thread():
    """One torch thread: the machine is shared, and oversubscribed OpenMP
    threads spin; restores the previous setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
