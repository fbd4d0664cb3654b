"""``check_protect``: unknown ``protect`` names are refused in one line, known ones pass through as a list."""
from __future__ import annotations

import pytest

from tfmot_easiedge.graph import analyze
from tfmot_easiedge.models import zoo
from tfmot_easiedge.selection import check_protect


@pytest.fixture(scope="module")
def analysis():
    return analyze(zoo.tiny_cnn(seed=0))


def test_group_ids_layer_names_and_members_pass(analysis):
    gid = next(iter(analysis.prunable_groups))
    names = [gid, "block2_bn1", "logits"]
    assert check_protect(analysis, iter(names)) == names
    assert check_protect(analysis, ()) == []


def test_unknown_names_are_all_named_in_one_line(analysis):
    with pytest.raises(ValueError) as err:
        check_protect(analysis, ["block1_conv1", "block2_conv", "nope"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("protect: 'block2_conv', 'nope' are not layers or groups of the model")
    assert "did you mean block2_conv1" in message


def test_a_single_string_is_refused(analysis):
    # A string is iterable: "block1_conv1" would otherwise be checked letter by letter.
    with pytest.raises(ValueError, match=r"got the string 'block1_conv1'; pass \['block1_conv1'\]"):
        check_protect(analysis, "block1_conv1")
