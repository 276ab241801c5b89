"""The filter widget's pure function: the feature map is the convolution it says, on each input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from karpa_lab.widgets.conv_filters import FILTERS, INPUTS, draw_response, filter_response, input_image


@pytest.mark.parametrize("name", list(FILTERS))
def test_the_map_is_pytorchs_convolution(name):
    r = filter_response(name, "checkerboard", stride=2)
    kernel = torch.tensor(FILTERS[name], dtype=torch.float32)
    ref = F.conv2d(input_image("checkerboard")[None, None], kernel[None, None], padding=1, stride=2)[0, 0]
    assert r["output"].shape == (16, 16)
    torch.testing.assert_close(torch.from_numpy(r["output"]), ref, rtol=0, atol=1e-5)


def test_edges_respond_where_the_checkerboard_changes():
    flat = filter_response("vertical edges (Sobel x)", "checkerboard")["output"]
    assert abs(flat[4, 4]) < 1e-6 and abs(flat[4, 8]) > 1  # inside a square vs on a vertical border
    assert filter_response("identity", "photo")["output"].shape == input_image("photo").shape


def test_inputs_and_clipping():
    assert set(INPUTS) == {"photo", "digit", "checkerboard"}
    assert filter_response("blur (box 3x3)", "digit", stride=9)["stride"] == 4
    with pytest.raises(ValueError, match="filter must be one of"):
        filter_response("emboss")
    with pytest.raises(ValueError, match="input must be one of"):
        filter_response("identity", "cat")
    fig = draw_response(filter_response("sharpen", "photo"))
    assert len(fig.axes) == 3
