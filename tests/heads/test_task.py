"""``heads/task.py``: the task heads' registry and their options."""

import pytest
import torch

from polymodal.heads.task import HEADS


def test_task_heads_are_registered_and_take_dropout():
    assert {"classify", "regress"} <= set(HEADS.names())
    head = HEADS.build("classify", 8, 3, dropout=0.25)
    assert head[0].p == 0.25 and head(torch.randn(5, 8)).shape == (5, 3)
    reg = HEADS.build("regress", 8, 1)
    assert reg(torch.randn(5, 8)).shape == (5, 1)


def test_a_head_is_linear_in_eval_mode():
    """Linear (after dropout), so late fusion stays an average of per-modality logits."""
    head = HEADS.build("classify", 4, 2).eval()
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    b = head(torch.zeros(1, 4))
    torch.testing.assert_close(head(x + y), head(x) + head(y) - b)


def test_unknown_head_names_the_valid_ones():
    with pytest.raises(KeyError, match="classify, regress"):
        HEADS.build("softmax", 4, 2)
