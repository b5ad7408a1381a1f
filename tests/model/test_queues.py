"""The FIFO queue of negatives."""

import torch

from cacl_cli.model.queues import FeatureQueue


def test_starts_as_unit_vectors_and_is_in_the_state_dict():
    q = FeatureQueue(10, 4)
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(10))
    assert set(q.state_dict()) == {"features", "ptr"}


def test_overwrites_oldest_first_and_wraps():
    q = FeatureQueue(5, 2)
    q.enqueue(torch.ones(3, 2))
    assert int(q.ptr) == 3
    q.enqueue(torch.full((3, 2), 2.0))
    assert int(q.ptr) == 1
    assert q.features[:, 0].tolist() == [2.0, 1.0, 1.0, 2.0, 2.0]


def test_more_keys_than_slots_keeps_the_newest():
    q = FeatureQueue(3, 1)
    q.enqueue(torch.arange(7.0).unsqueeze(1))
    assert sorted(q.features[:, 0].tolist()) == [4.0, 5.0, 6.0]


def test_snapshot_is_not_changed_by_later_enqueue():
    q = FeatureQueue(4, 2)
    snapshot = q()
    q.enqueue(torch.zeros(4, 2))
    assert snapshot.norm(dim=1).min() > 0.99
