"""The allocator's action space: actions to arms and back."""

from __future__ import annotations

import pytest
from ttc_runtime.env.actions import ActionSpace

from tests.conftest import ARMS, BEAM4, BEAM16, BON, REV
from ttc_runtime.strategies import Arm


def test_action_space_maps_actions_to_arms_with_the_documented_rules():
    space = ActionSpace.from_arms(ARMS, adaptive=False)
    assert space.strategies == ("best_of_n_weighted", "beam_search", "revisions")
    assert space.nvec == [3, 2] and space.knob_counts() == [1, 2, 1]
    assert space.arm([1, 1], 16) == Arm(BEAM16, 16)
    assert space.arm([0, 1], 16) == Arm(BON, 16)  # knob index modulo the strategy's one knob
    assert space.arm([1, 1], 4) == Arm(BEAM4, 4)  # M = 16 does not run at 4: the first knob that does
    for arm in ARMS:
        assert space.arm(space.action(arm), arm.budget) == arm
    with pytest.raises(ValueError, match="outside the space"):
        space.arm([3, 0], 4)
    with pytest.raises(ValueError, match="budget 64"):
        space.arm([0, 0], 64)
    adaptive = ActionSpace.from_arms(ARMS, adaptive=True)
    assert adaptive.nvec == [3, 2, 2] and adaptive.arm([2, 0, 1]) == Arm(REV, 16)
