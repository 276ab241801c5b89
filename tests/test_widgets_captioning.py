"""The captioning widget's pure function: its captions are the decoders' own, its maps the model's attention."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.data.scenes import WORDS, decode, make_scenes
from karpa_lab.models.captioning import ShowAndTell, ShowAttendTell, beam_search, sample_captions
from karpa_lab.widgets.captioning import caption_view, draw_caption_view


@pytest.mark.parametrize("cls", [ShowAndTell, ShowAttendTell])
def test_the_view_shows_the_decoders_captions_and_the_attention(cls):
    torch.manual_seed(0)
    model, scenes = cls(len(WORDS)).eval(), make_scenes(4, seed=1)
    v = caption_view(model, scenes, index=2, beam=20)
    assert v["beam_width"] == 8  # clipped
    assert v["greedy"] == decode(sample_captions(model, scenes.images[2:3])[0][0])
    best, logp = beam_search(model, scenes.images[2:3], beam=8)
    assert v["beam"] == decode(best[0]) and abs(v["beam_logprob"] - float(logp)) < 1e-5
    assert abs(v["greedy_logprob"] - float(sample_captions(model, scenes.images[2:3])[1])) < 1e-5
    if cls is ShowAndTell:
        assert v["maps"] is None
    else:
        assert v["maps"].shape == (len(v["words"]), 6, 6)
        assert abs(v["maps"].sum(axis=(1, 2)) - 1).max() < 1e-5
    fig = draw_caption_view(v)
    assert len(fig.axes) == (1 if v["maps"] is None else 1 + len(v["words"]))
    with pytest.raises(ValueError, match=r"index must be in \[0, 4\)"):
        caption_view(model, scenes, index=4)
