"""Captioning: the scene grammar, the loss against PyTorch's, greedy vs beam vs exhaustive search, BLEU vs sacrebleu."""

from __future__ import annotations

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from karpa_lab.data.scenes import (
    BOS,
    EOS,
    HELD_OUT,
    MAX_TOKENS,
    PAD,
    WORDS,
    caption_of,
    caption_splits,
    decode,
    encode,
    make_scenes,
    parse_caption,
    score_captions,
)
from karpa_lab.models.captioning import (
    ShowAndTell,
    ShowAttendTell,
    beam_search,
    caption_loss,
    corpus_bleu,
    exhaustive_search,
    sample_captions,
    sequence_logprob,
    teacher_forcing_step,
)

MODELS = [ShowAndTell, ShowAttendTell]


def scenes(n=6, seed=0):
    return make_scenes(n, size=24, seed=seed)


# ------------------------------------------------------------------------------------- the scenes
def test_captions_round_trip_through_the_grammar_and_the_ids():
    data = scenes(50)
    for attrs, caption, tokens in zip(data.attributes, data.captions(), data.tokens):
        assert parse_caption(caption) == tuple(int(a) for a in attrs)
        assert decode(tokens) == caption and caption_of(attrs) == caption
        assert tokens[0] == BOS and (tokens == EOS).sum() == 1 and tokens.shape == (MAX_TOKENS,)
    assert parse_caption("a red circle near a blue square") is None


def test_the_first_object_named_is_left_of_or_above_the_second():
    data = scenes(200)
    top, left = data.boxes[:, :, 0], data.boxes[:, :, 1]
    horizontal = data.attributes[:, 2] == 0
    assert bool((left[horizontal, 0] < left[horizontal, 1] - 8).all())  # disjoint, the first on the left
    assert bool((top[~horizontal, 0] < top[~horizontal, 1] - 8).all())
    inside = (data.boxes >= 0).all() and (data.boxes[..., 2:] <= 24).all()
    assert inside


def test_each_object_is_drawn_in_its_box_in_its_colour():
    data = make_scenes(20, noise=0.0)
    for image, attrs, boxes in zip(data.images, data.attributes, data.boxes):
        for k, colour in ((0, attrs[0]), (1, attrs[3])):
            t, lft, b, r = boxes[k].tolist()
            patch = image[:, t:b, lft:r]
            assert patch.sum() > 0 and int(patch.sum(dim=(1, 2)).argmax()) == {0: 0, 1: 1, 2: 2, 3: 0}[int(colour)]
        assert image.sum() > 0


def test_splits_hold_the_pairs_out_of_training_and_put_them_in_novel():
    splits = caption_splits(n_train=300, n_eval=60)
    held = {(c, s) for c, s in HELD_OUT}

    def pairs(caption):
        w = caption.split()
        return {(w[1], w[2]), (w[-2], w[-1])}

    for name in ("train", "val", "test"):
        assert not any(pairs(c) & held for c in splits[name].captions()), name
    assert all(pairs(c) & held for c in splits["novel"].captions())
    assert not torch.equal(splits["train"].images[:60], splits["test"].images)


def test_scoring_counts_attributes_and_ungrammatical_captions():
    attrs = torch.tensor([[0, 0, 0, 2, 1], [1, 2, 1, 3, 0]])
    good = [caption_of(a) for a in attrs]
    assert score_captions(good, attrs)["exact"] == 1.0
    one_wrong = [good[0].replace("blue", "green"), "a a a"]
    s = score_captions(one_wrong, attrs)
    assert s["exact"] == 0.0 and s["colour 2"] == 0.0 and s["shape 1"] == 0.5 and s["grammatical"] == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda: make_scenes(5, size=16), "size must be >= 20"),
    (lambda: make_scenes(0), "n must be >= 1"),
    (lambda: make_scenes(5, exclude=HELD_OUT, require=HELD_OUT[:1]), "both excluded and required"),
    (lambda: encode("a purple circle"), "not caption words"),
    (lambda: decode([1, 3, 99]), "outside the vocabulary"),
    (lambda: score_captions(["a"], torch.zeros(2, 5, dtype=torch.long)), "1 captions for 2 scenes"),
])
def test_bad_input_to_the_data_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------- the models
@pytest.mark.parametrize("cls", MODELS)
def test_shapes_of_teacher_forcing_and_of_every_decoder(cls):
    torch.manual_seed(0)
    model, data = cls(len(WORDS)), scenes(3)
    logits, maps = model(data.images, data.tokens[:, :-1], return_attention=True)
    assert logits.shape == (3, MAX_TOKENS - 1, len(WORDS))
    assert (maps is None) == (cls is ShowAndTell)
    if maps is not None:
        assert maps.shape == (3, MAX_TOKENS - 1, 36)
        torch.testing.assert_close(maps.sum(-1), torch.ones(3, MAX_TOKENS - 1))
    words, logp, _ = sample_captions(model, data.images, max_len=7)
    assert words.shape == (3, 7) and logp.shape == (3,)
    best, score = beam_search(model, data.images, beam=4, max_len=7)
    assert best.shape == (3, 7) and score.shape == (3,)


@pytest.mark.parametrize("cls", MODELS)
def test_bad_input_to_a_model_gets_a_clear_error(cls):
    model, data = cls(len(WORDS)), scenes(2)
    with pytest.raises(ValueError, match=r"images must be \(batch, 3, 24, 24\)"):
        model(data.images[:, :1], data.tokens)
    with pytest.raises(ValueError, match="words must be int64 ids"):
        model(data.images, data.tokens.float())
    with pytest.raises(ValueError, match=r"word ids must lie in \[0, 14\)"):
        model(data.images, data.tokens + 20)
    with pytest.raises(ValueError, match="beam must be an integer >= 1"):
        beam_search(model, data.images, beam=0)
    with pytest.raises(ValueError, match="max_len must be an integer >= 1"):
        sample_captions(model, data.images, max_len=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        cls(len(WORDS), size=26)
    with pytest.raises(ValueError, match="vocab_size >= 4"):
        cls(3)


def test_the_loss_from_scratch_equals_cross_entropy_with_ignore_index_forward_and_gradient():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, 14, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(3, 14, (4, 9), generator=g)
    targets[0, 5:] = PAD
    targets[2, 3:] = PAD
    ours = caption_loss(logits, targets)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-7)
    assert bool((g_ours[0, 5:] == 0).all())  # padding gets no gradient
    with pytest.raises(ValueError, match="every target is <pad>"):
        caption_loss(logits, torch.zeros(4, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="need logits"):
        caption_loss(logits[0], targets)


def test_teacher_forcing_feeds_the_true_previous_word():
    torch.manual_seed(0)
    model, data = ShowAndTell(len(WORDS)), scenes(2)
    loss = teacher_forcing_step(model, (data.images, data.tokens))
    logits = model(data.images, data.tokens[:, :-1])
    torch.testing.assert_close(loss, caption_loss(logits, data.tokens[:, 1:]))
    changed = data.tokens.clone()
    changed[:, 3] = 5  # change one input word: outputs before it are untouched, the next one changes
    after = model(data.images, changed[:, :-1])
    torch.testing.assert_close(after[:, :3], logits[:, :3])
    assert not torch.allclose(after[:, 3], logits[:, 3])


# ------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("cls", MODELS)
def test_beam_one_is_greedy_and_a_wider_beam_is_likelier_on_average(cls):
    torch.manual_seed(1)
    model, data = cls(len(WORDS)).eval(), scenes(8)
    greedy, greedy_logp, _ = sample_captions(model, data.images, max_len=8, temperature=0.0)
    beam1, beam1_logp = beam_search(model, data.images, beam=1, max_len=8)
    assert torch.equal(greedy, beam1)
    torch.testing.assert_close(greedy_logp, beam1_logp)
    beam5, beam5_logp = beam_search(model, data.images, beam=5, max_len=8)
    # On average, not for every image: a wider beam can prune greedy's prefix on the way.
    assert float(beam5_logp.mean()) >= float(greedy_logp.mean())
    torch.testing.assert_close(sequence_logprob(model, data.images, beam5), beam5_logp, rtol=0, atol=1e-4)
    torch.testing.assert_close(sequence_logprob(model, data.images, greedy), greedy_logp, rtol=0, atol=1e-4)


@pytest.mark.parametrize("cls", MODELS)
def test_a_beam_as_wide_as_the_search_space_is_exhaustive_search(cls):
    torch.manual_seed(2)
    model = cls(5).eval()  # <pad>, <bos>, <eos> and two words: 3^4 = 81 sequences of 4 words
    images = scenes(3).images
    for image in images:
        best, score = exhaustive_search(model, image[None], max_len=4)
        wide, wide_score = beam_search(model, image[None], beam=81, max_len=4)
        assert torch.equal(wide[0], best)
        assert abs(float(wide_score) - score) < 1e-4
        greedy_score = float(sample_captions(model, image[None], max_len=4)[1])
        assert greedy_score <= score + 1e-5  # no sequence beats the exhaustive best


def test_sampling_uses_the_course_sampler_and_its_seed():
    torch.manual_seed(0)
    model, data = ShowAndTell(len(WORDS)), scenes(4)
    a = sample_captions(model, data.images, temperature=1.0, generator=torch.Generator().manual_seed(3))[0]
    b = sample_captions(model, data.images, temperature=1.0, generator=torch.Generator().manual_seed(3))[0]
    c = sample_captions(model, data.images, temperature=1.0, generator=torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not bool(((a == BOS) | ((a == PAD) & (torch.cumsum(a == EOS, 1) == 0))).any())  # never <bos>, no early pad
    with pytest.raises(ValueError, match="temperature must be"):
        sample_captions(model, data.images, temperature=-1.0)


# ------------------------------------------------------------------------------------- BLEU
PAIRS = [
    ("a red circle left of a blue square", "a red circle left of a blue square"),
    ("a red circle left of a green square", "a red circle left of a blue square"),
    ("a blue square above a red circle", "a red circle above a blue square"),
    ("a yellow triangle above a yellow triangle", "a yellow triangle above a green circle"),
    ("a red circle", "a red circle left of a blue square"),
]


@pytest.mark.parametrize("end", [1, 2, 3, 5])
def test_bleu_from_scratch_equals_sacrebleu(end):
    hyps, refs = [h for h, _ in PAIRS[:end]], [r for _, r in PAIRS[:end]]
    ours = corpus_bleu(hyps, refs)
    ref = sacrebleu.corpus_bleu(hyps, [refs], smooth_method="none", tokenize="none").score / 100
    assert abs(ours - ref) < 1e-9, (ours, ref)


def test_bleu_edge_cases():
    assert corpus_bleu(["a red circle"], ["a red circle"]) == 0.0  # no 4-gram: p_4 = 0 without smoothing
    assert corpus_bleu(["a red circle left of"], ["a red circle left of"]) == 1.0
    with pytest.raises(ValueError, match="as many references as hypotheses"):
        corpus_bleu(["a"], ["a", "b"])
