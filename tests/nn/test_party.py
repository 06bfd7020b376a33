import torch

from mmer.data.batch import PartyStructure
from mmer.nn.party import TargetMarker, from_grid, grid_size, to_grid


def party() -> PartyStructure:
    # sample 0: 2 persons x 2 segments, person-major; sample 1: 1 person x 3 segments + padding
    person = torch.tensor([[0, 0, 1, 1], [0, 0, 0, -1]])
    segment = torch.tensor([[0, 1, 0, 1], [0, 1, 2, -1]])
    target = torch.tensor([[False, False, True, False], [False, True, False, False]])
    return PartyStructure(person, segment, target)


def test_grid_round_trip_places_tokens_by_person_and_segment():
    p = party()
    x = torch.arange(8.0).view(2, 4, 1) + 1
    persons, segments = grid_size(p)
    assert (persons, segments) == (2, 3)
    grid, occupied = to_grid(x, p, persons, segments)
    assert grid[0, 1, 0, 0] == 3 and grid[1, 0, 2, 0] == 7 and grid[1, 1, 0, 0] == 0
    assert occupied.sum() == 7 and not occupied[0, :, 2].any()
    back = from_grid(grid, p)
    assert torch.equal(back, x * p.valid.unsqueeze(-1))


def test_grid_gradients_flow_to_tokens():
    p = party()
    x = torch.randn(2, 4, 3, requires_grad=True)
    grid, _ = to_grid(x, p, 2, 3)
    from_grid(grid * 2, p).sum().backward()
    assert torch.equal(x.grad, 2 * p.valid.unsqueeze(-1).float().expand(-1, -1, 3))


def test_target_marker_only_touches_targets():
    p = party()
    marker = TargetMarker(3)
    x = torch.zeros(2, 4, 3)
    y = marker(x, p)
    assert torch.equal(y[0, 2], marker.embedding.detach()) and y[0, 0].abs().sum() == 0
    assert torch.equal(marker(x, None), x)
