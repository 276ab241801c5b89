r"""Pick a filter and an input, see the feature map: what one convolution does to an image.

The logic is :func:`filter_response` (names in, arrays and a readout out) and :func:`draw_response`
(a matplotlib figure); :func:`filter_widget` only wires two dropdowns and a stride slider to them.

    r = filter_response("vertical edges (Sobel x)", "photo", stride=1)
    r["output"]   # (H_out, W_out) = conv2d(input, kernel, padding=1, stride)
"""

from __future__ import annotations

import numpy as np
import torch

from karpa_lab.models.conv import conv2d_im2col
from karpa_lab.widgets import serialized, show_figure

FILTERS: dict[str, list[list[float]]] = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "vertical edges (Sobel x)": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "horizontal edges (Sobel y)": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "blur (box 3x3)": [[1 / 9] * 3] * 3,
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "spots (Laplacian)": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
}
INPUTS = ("photo", "digit", "checkerboard")
STRIDE_RANGE = (1, 4)


def input_image(name: str) -> torch.Tensor:
    """(H, W) in [0, 1]: scikit-learn's bundled photo, a digit on a 32x32 canvas, or an 8-pixel checkerboard."""
    if name == "photo":
        from karpa_lab.data.photos import load_photo

        return load_photo("china.jpg", height=72)[0]
    if name == "digit":
        from karpa_lab.data.digits import load_digits_splits

        canvas = torch.zeros(32, 32)
        canvas[8:24, 8:24] = torch.nn.functional.interpolate(load_digits_splits().x_test[:1], size=(16, 16))[0, 0]
        return canvas
    if name == "checkerboard":
        i = torch.arange(32)
        return (((i[:, None] // 8) + (i[None, :] // 8)) % 2).float()
    raise ValueError(f"input must be one of {INPUTS}, got {name!r}")


def filter_response(filter_name: str, input_name: str = "photo", stride: int = 1) -> dict:
    """The input, the 3x3 kernel and the feature map conv2d(input, kernel, padding=1, stride=stride).

    Returns ``input`` (H, W), ``kernel`` (3, 3), ``output`` (H_out, W_out) numpy arrays, the names and
    stride used and ``readout`` (HTML). Unknown names are refused; ``stride`` is clipped to [1, 4].
    """
    if filter_name not in FILTERS:
        raise ValueError(f"filter must be one of {list(FILTERS)}, got {filter_name!r}")
    stride = int(min(max(int(stride), STRIDE_RANGE[0]), STRIDE_RANGE[1]))
    image = input_image(input_name)
    kernel = torch.tensor(FILTERS[filter_name], dtype=torch.float32)
    out = conv2d_im2col(image[None, None], kernel[None, None], padding=1, stride=stride)[0, 0]
    readout = (f"<b>{filter_name}</b> on the {input_name} ({tuple(image.shape)[0]}x{tuple(image.shape)[1]}), "
               f"stride {stride}: feature map {out.shape[0]}x{out.shape[1]}, values "
               f"{float(out.min()):.2f} to {float(out.max()):.2f}, mean |y| {float(out.abs().mean()):.3f}")
    return {"input": image.numpy(), "kernel": kernel.numpy(), "output": out.numpy(), "filter": filter_name,
            "input_name": input_name, "stride": stride, "readout": readout}


def draw_response(response: dict, fig=None):
    """Input | kernel | feature map, side by side (the map in a diverging colour map centred on 0)."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(9, 3))
    fig.clear()
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 1, 3]})
    axes[0].imshow(response["input"], cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("input")
    k = response["kernel"]
    axes[1].imshow(k, cmap="RdBu_r", vmin=-np.abs(k).max(), vmax=np.abs(k).max())
    for (i, j), v in np.ndenumerate(k):
        axes[1].text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7)
    axes[1].set_title("kernel")
    out = response["output"]
    limit = max(float(np.abs(out).max()), 1e-6)
    axes[2].imshow(out, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[2].set_title(f"feature map (stride {response['stride']})")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def filter_widget(filter_name: str = "vertical edges (Sobel x)", input_name: str = "photo", stride: int = 1):
    """Dropdowns for the filter and the input, a stride slider; the picture and the readout follow them."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    filters = w.Dropdown(options=list(FILTERS), value=filter_name, description="filter")
    inputs = w.Dropdown(options=list(INPUTS), value=input_name, description="input")
    strides = w.IntSlider(value=stride, min=STRIDE_RANGE[0], max=STRIDE_RANGE[1], description="stride",
                          continuous_update=False)
    text, out = w.HTML(), w.Output()
    fig = Figure(figsize=(9, 3))

    @serialized
    def redraw(_=None) -> None:
        response = filter_response(filters.value, inputs.value, strides.value)
        text.value = response["readout"]
        draw_response(response, fig)
        show_figure(out, fig)

    for control in (filters, inputs, strides):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([filters, inputs, strides]), text, out])
