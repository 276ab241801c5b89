"""Lab 05 (a convolution layer) graded end to end: each plausible wrong solution loses its part's points.

One autograde run grades the honest solution and one submission per named mistake, each in its sandbox;
the library convolution and autograd are refused however they are reached, torch function modes switched
off included.
"""

from __future__ import annotations

import pytest
from test_labs import LABS, grade_edits, points

pytest.importorskip("nbgrader")
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",
                                         "ignore::nbformat.warnings.MissingIDFieldWarning")]

LAB = "05_conv_layer"

# Each mistake: (the answer cell it edits, the text replaced, its replacement).
MISTAKES = {
    # the kernel flipped, as in the textbook definition of convolution (F.conv2d does not flip it)
    "flipped_kernel": ("conv2d_forward", 'weight[:, :, u, v])\n    return',
                       'weight.flip(2, 3)[:, :, u, v])\n    return'),
    # the padding forgotten: right for padding 0, wrong shapes and values otherwise
    "no_padding": ("conv2d_forward", "xp = F.pad(x, (pw, pw, ph, ph))\n    h_out", "xp = x\n    h_out"),
    # dL/dx sent back through the flipped kernel (half-remembering "the gradient is a flipped convolution")
    "flipped_grad_x": ("conv2d_backward", 'torch.einsum("bohw,oc->bchw", grad_out, weight[:, :, u, v])',
                       'torch.einsum("bohw,oc->bchw", grad_out, weight.flip(2, 3)[:, :, u, v])'),
    # dL/dweight read from stride-1 windows whatever the stride
    "stride_blind_weight": ("conv2d_backward", 'grad_out, xp[:, :, rows, cols])',
                            'grad_out, xp[:, :, u:u + h_out, v:v + w_out])'),
    # dL/dbias averaged instead of summed
    "mean_bias": ("conv2d_backward", "grad_out.sum(dim=(0, 2, 3))", "grad_out.mean(dim=(0, 2, 3))"),
    # the forward pass by the library, and autograd for the backward (both refused)
    "library_conv": ("conv2d_forward", "### BEGIN SOLUTION", "return getattr(F, 'conv' + '2d')(x, weight, bias, "
                     "stride, padding)\n    ### BEGIN SOLUTION"),
    # the library conv with torch function modes switched off around it (the grader's watch is one)
    "switched_off": ("conv2d_forward", "### BEGIN SOLUTION",
                     "with getattr(torch._C, 'DisableTorch' + 'Function')():\n"
                     "        return getattr(F, 'conv' + '2d')(x, weight, bias, stride, padding)\n"
                     "    ### BEGIN SOLUTION"),
    "autograd": ("conv2d_backward", "### BEGIN SOLUTION",
                 "x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()\n"
                 "    b = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)\n"
                 "    y = conv2d_forward(x, weight, b, stride, padding)\n"
                 "    getattr(y, 'back' + 'ward')(grad_out)\n"
                 "    return tuple(getattr(t, 'gr' + 'ad') for t in (x, weight, b))\n    ### BEGIN SOLUTION"),
}


def test_each_wrong_solution_loses_its_points(tmp_path, sandbox):
    results = grade_edits(tmp_path, LAB, MISTAKES)
    pts = points(LABS / LAB / f"{LAB}.ipynb")
    full = sum(pts.values())
    backward = pts["test_grad_input"] + pts["test_grad_weight"] + pts["test_grad_bias"]
    expected = {
        "honest": full,
        "flipped_kernel": full - pts["test_forward_values"],
        "no_padding": full - pts["test_forward_shapes"] - pts["test_forward_values"],
        "flipped_grad_x": full - pts["test_grad_input"],
        "stride_blind_weight": full - pts["test_grad_weight"],
        "mean_bias": full - pts["test_grad_bias"],
        "library_conv": full - pts["test_forward_shapes"] - pts["test_forward_values"],
        "switched_off": full - pts["test_forward_shapes"] - pts["test_forward_values"],
        "autograd": full - backward,
    }
    report = (tmp_path / "course" / "report.txt").read_text(encoding="utf-8")
    assert {s: r.score for s, r in results.items()} == expected, report
    problems = {s: " | ".join(r.problems) for s, r in results.items()}
    assert results["honest"].problems == [], report
    for student, hint in [("flipped_kernel", "the kernel is flipped"), ("mean_bias", "the bias gradient is a mean")]:
        graded = tmp_path / "course" / "autograded" / student / LAB / f"{LAB}.ipynb"
        assert hint in graded.read_text(encoding="utf-8"), f"{student}'s feedback names the mistake"
    assert "called conv2d, which this lab asks you to write yourself" in problems["library_conv"], report
    assert "the notebook's functions called backward" in problems["autograd"], report
    assert "torch._C.DisableTorchFunction (switched off the grader's watch)" in problems["switched_off"], report
