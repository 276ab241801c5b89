"""The temperature widget's pure function: its soft targets and gradient are the ones the KD loss gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from karpa_lab.widgets.distill_temperature import T_RANGE, draw_temperature, temperature_response

TEACHER = torch.tensor([9.0, 1.0, 3.5, -2.0, 0.0, 1.5, -1.0, 2.0, 4.0, 0.5])
STUDENT = torch.tensor([5.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("T", [1.0, 4.0, 15.0])
def test_soft_targets_and_gradient_are_autograds(T):
    r = temperature_response(TEACHER, STUDENT, T)
    np.testing.assert_allclose(r["p"], F.softmax(TEACHER.double() / T, -1).numpy(), atol=1e-12)
    z = STUDENT.double()[None].requires_grad_()
    loss = T**2 * F.cross_entropy(z / T, F.softmax(TEACHER.double()[None] / T, -1))
    (g,) = torch.autograd.grad(loss, z)
    np.testing.assert_allclose(r["grad"], g[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(r["grad_unscaled"], g[0].numpy() / T**2, atol=1e-12)


def test_a_higher_temperature_softens_and_the_readout_says_so():
    cold, hot = temperature_response(TEACHER, STUDENT, 1.0), temperature_response(TEACHER, STUDENT, 10.0)
    assert hot["entropy"] > cold["entropy"] + 1.0
    assert hot["p"].max() < cold["p"].max()
    assert "top class 0" in cold["readout"] and "runner-up 8" in cold["readout"]
    assert cold["readout"] != hot["readout"]
    assert temperature_response(TEACHER, STUDENT, 100.0)["T"] == T_RANGE[1]
    assert temperature_response(TEACHER, STUDENT, 0.0)["T"] == T_RANGE[0]


def test_bad_input_and_the_figure():
    with pytest.raises(ValueError, match="one length"):
        temperature_response(TEACHER, STUDENT[:5], 2.0)
    fig = draw_temperature(temperature_response(TEACHER, STUDENT, 3.0))
    assert len(fig.axes) == 2
