# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 13 · Image captioning
#
# **The question.** Lesson 12's CNN turns an image into features; lesson 04's LSTM writes text one token
# at a time. Put the first in front of the second and the network writes a sentence about an image: image
# captioning (图像描述生成). How is such a model trained, how is a caption read out of it (greedy, sampled,
# or by beam search), and how do we know a caption is right?
#
# By the end you can: build a CNN encoder and an LSTM decoder that starts from the image (Show and Tell,
# Karpathy's NeuralTalk), train it with teacher forcing through `fit`, decode greedily, by sampling and by
# beam search written from scratch and checked against exhaustive search; score captions with BLEU and,
# better, attribute by attribute against negative controls; add spatial attention (Show, Attend and Tell)
# and check that each word looks at the object it names; and see where such models stop composing.

# %%
import math
import time
from collections import Counter

import matplotlib.pyplot as plt
import sacrebleu
import torch
import torch.nn.functional as F

from karpa_lab import by_scale, fit, seed_everything, warmup_cosine
from karpa_lab.data.scenes import (
    ATTRIBUTES,
    BOS,
    EOS,
    HELD_OUT,
    PAD,
    WORDS,
    caption_splits,
    decode,
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
    word_logprobs,
)
from karpa_lab.widgets.captioning import caption_widget

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Scenes whose captions we can check
#
# Real caption data (COCO, Flickr30k) is large, and its captions can only be judged by comparing them with
# other people's captions. Here scenes are drawn by code: two coloured shapes on a 24x24 canvas, side by
# side or one above the other, and one caption from a small grammar that names the left (or top) object
# first: "a red circle left of a blue square". Because we know what is in each scene, a caption is right
# or wrong exactly, attribute by attribute (`karpa_lab.data.scenes`).
#
# Two colour-shape pairs (`HELD_OUT`) never appear in the training scenes. The `novel` split shows at
# least one of them in every scene: it tests whether the model composes a colour and a shape it has seen,
# but never together.

# %%
N_TRAIN = by_scale(3000, 20000)
splits = caption_splits(n_train=N_TRAIN, n_eval=500)
train, test, novel = splits["train"], splits["test"], splits["novel"]
print(f"vocabulary ({len(WORDS)}): {' '.join(WORDS)}")
print(f"scenes: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; held out of training: {HELD_OUT}")
print("one caption as ids:", train.tokens[0].tolist(), "->", repr(decode(train.tokens[0])))
fig, axes = plt.subplots(1, 6, figsize=(12, 2.6))
for ax, k in zip(axes, range(6)):
    ax.imshow(train.images[k].permute(1, 2, 0))
    ax.set_title(train.captions()[k].replace(" a ", "\na "), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()
held_words = [" ".join(p) for p in HELD_OUT]
assert not any(h in c for c in train.captions() for h in held_words)
assert all(any(h in c for h in held_words) for c in novel.captions())

# %% [markdown]
# ## 2. The model, with shapes
#
# **Encoder.** A small CNN (conv, batch norm, ReLU, pool: lesson 12's blocks) maps the image (B, 3, 24, 24)
# to a grid of features $F$ (B, P, C): $P = 6 \times 6$ cells, $C = 32$ channels, plus a learned vector per
# cell so that a feature knows where it is.
#
# **Show and Tell decoder.** The image sets the LSTM's initial state, then the LSTM (lesson 03's cell,
# `karpa_lab.models.lstm.LSTMCell`) writes:
#
# $$v = \mathrm{flatten}(F)\,W_v^\top \ (B, E), \qquad h_0 = \tanh(v W_h^\top),\quad c_0 = v W_c^\top \ (B, H)$$
# $$x_t = E[y_{t-1}] \ (B, D), \qquad h_t, c_t = \mathrm{LSTM}(x_t, h_{t-1}, c_{t-1}), \qquad
#   z_t = h_t W_o^\top + b_o \ (B, V)$$
#
# with $y_0 = \langle bos\rangle$ and $z_t$ the logits of word $t$; the caption ends at $\langle eos\rangle$.
#
# **Teacher forcing (教师强制).** In training, the input at step $t$ is the *true* previous word, not
# the model's own guess: all $T$ steps are computed in one pass over the reference caption, and the loss is
# the cross-entropy of each true next word, averaged over the $N$ real tokens (padding left out):
#
# $$\mathcal{L} = -\frac{1}{N} \sum_{b,t:\ y_{b,t} \neq \langle pad\rangle} \log \mathrm{softmax}(z_{b,t})_{y_{b,t}}$$
#
# The table shows it for one caption: the decoder reads the left column and is scored on the right one.

# %%
tokens = train.tokens[1]
print(f"{'step':>4}  {'input y_(t-1)':<14} {'target y_t':<10}")
for t, (x_in, y_out) in enumerate(zip(tokens[:-1].tolist(), tokens[1:].tolist())):
    if y_out == PAD:
        break
    print(f"{t + 1:>4}  {WORDS[x_in]:<14} {WORDS[y_out]:<10}")

# %% [markdown]
# The loss from scratch (log-softmax, pick the target, average over the real tokens) is the package's
# `caption_loss`; it must equal PyTorch's `F.cross_entropy(..., ignore_index=PAD)`, in value and gradient:

# %%
g = torch.Generator().manual_seed(0)
logits = torch.randn(4, 10, len(WORDS), dtype=torch.float64, generator=g, requires_grad=True)
targets = train.tokens[:4, 1:]
ours = caption_loss(logits, targets)
reference = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)
grad_ours, = torch.autograd.grad(ours, logits)
grad_ref, = torch.autograd.grad(reference, logits)
ours, reference = ours.detach(), reference.detach()
loss_gap = abs(float(ours) - float(reference))
grad_gap = float((grad_ours - grad_ref).abs().max())
print(f"loss {float(ours):.6f} vs F.cross_entropy {float(reference):.6f}: difference {loss_gap:.1e}; "
      f"gradient difference {grad_gap:.1e}; padding positions get gradient {float(grad_ours[targets == PAD].abs().max()):.1f}")
assert loss_gap < 1e-6 and grad_gap < 1e-8

# %% [markdown]
# ## 3. Train it with `fit`
#
# `teacher_forcing_step` is the `step_fn`: for a batch of (images, tokens) it runs the decoder on
# `tokens[:, :-1]` and scores it on `tokens[:, 1:]`. Training takes a few hundred steps; `fit` scores the
# validation scenes along the way, and the test scenes are kept for the end.

# %%
STEPS = by_scale(250, 3000)


def train_captioner(model):
    schedule = warmup_cosine(STEPS // 10, STEPS)
    history = fit(model, train.loader(batch_size=64), steps=STEPS, lr=5e-3, schedule=schedule,
                  step_fn=teacher_forcing_step, val_data=splits["val"].loader(250, shuffle=False),
                  eval_every=STEPS // 5, device="cpu", verbose=False)
    return model.eval(), history


start = time.perf_counter()
torch.manual_seed(0)
tell, tell_history = train_captioner(ShowAndTell(len(WORDS)))
print(f"Show and Tell: {sum(p.numel() for p in tell.parameters()):,} weights, {STEPS} steps in "
      f"{time.perf_counter() - start:.1f} s; loss {tell_history.smoothed_loss()[-1]:.3f} nats per word (training, "
      f"smoothed), {tell_history.val_loss[-1]:.3f} (validation scenes)")

# %% [markdown]
# ## 4. Reading a caption out: greedy, sampling, beam search
#
# The model gives $p(y_t \mid y_{<t}, \text{image})$; a caption is a sequence, and we want a likely one.
# **Greedy decoding** takes the arg-max word at every step. **Sampling** draws each word from the softmax
# at a temperature, with the course's one sampler (`karpa_lab.models.sampling.sample_next`; temperature 0
# is greedy). Both go through `sample_captions`. Their log-probability is
# $\log p(y \mid \text{image}) = \sum_t \log p(y_t \mid y_{<t}, \text{image})$, up to and including
# $\langle eos\rangle$.

# %%
greedy, greedy_logp, _ = sample_captions(tell, test.images)
greedy_text = [decode(w) for w in greedy]
for k in range(3):
    print(f"reference: {test.captions()[k]:<44} greedy: {greedy_text[k]}")
g = torch.Generator().manual_seed(0)
for temperature in (0.5, 1.0, 2.0):
    words, logp, _ = sample_captions(tell, test.images[:1].repeat(3, 1, 1, 1), temperature=temperature, generator=g)
    print(f"temperature {temperature}: " + " | ".join(decode(w) for w in words))
# the log-probabilities the decoder reports are those of a teacher-forced pass over its own caption
replayed = sequence_logprob(tell, test.images, greedy)
print(f"greedy mean log-prob {float(greedy_logp.mean()):.3f}, replayed {float(replayed.mean()):.3f}")
assert float((replayed - greedy_logp).abs().max()) < 1e-4

# %% [markdown]
# **Beam search (束搜索).** Greedy commits to each word; a word that looks best now can lead to a worse
# sentence. Beam search keeps the $k$ most likely prefixes: at every step it extends each by every word,
# scores the candidates by their summed log-probability, and keeps the $k$ best. A prefix that has emitted
# $\langle eos\rangle$ is finished and keeps its score; it stays in the running against the longer ones.
# With $k = 1$ it is greedy decoding. From scratch, for one image, with lists:

# %%
def beam_search_one(model, image, beam, max_len=12):
    """The `beam` best captions of one image (1, 3, S, S): (log-prob, words, state, finished) per prefix."""
    prefixes = [(0.0, [], model.start(image), False)]
    for _ in range(max_len):
        candidates = []
        for score, words, state, finished in prefixes:
            if finished:  # carried over unchanged
                candidates.append((score, words, state, True))
                continue
            logits, next_state, _ = model.step(torch.tensor([words[-1] if words else BOS]), state)
            logp = word_logprobs(logits)[0]
            for w in torch.nonzero(logp > -math.inf).flatten().tolist():
                candidates.append((score + float(logp[w]), words + [w], next_state, w == EOS))
        prefixes = sorted(candidates, key=lambda c: -c[0])[:beam]
        if all(p[3] for p in prefixes):
            break
    return prefixes[0][1], prefixes[0][0]


with torch.no_grad():
    worst = 0.0
    for beam in (1, 2, 3):
        batch_words, batch_logp = beam_search(tell, test.images[:12], beam=beam)
        for k in range(12):
            words, logp = beam_search_one(tell, test.images[k:k + 1], beam)
            assert decode(words) == decode(batch_words[k])
            worst = max(worst, abs(logp - float(batch_logp[k])))
print(f"from-scratch beam search == karpa_lab's batched beam_search on 12 scenes, beams 1-3; "
      f"largest log-prob difference {worst:.1e}")
assert worst < 1e-4

# %% [markdown]
# **Checked against exhaustive search.** On a tiny vocabulary (two words besides the special tokens) every
# sequence of at most four words can be scored: $1 + 2 + 4 + 8 = 15$ that end with $\langle eos\rangle$
# and $2^4 = 16$ that reach four words without it. A beam as wide as the search space (81 prefixes kept,
# more than there are) must find the best one, on every image; greedy need not (the count is printed).

# %%
torch.manual_seed(3)
tiny = ShowAttendTell(5).eval()  # <pad>, <bos>, <eos> and two words; untrained, so its choices are close calls
greedy_found = 0
for image in test.images[:8]:
    best, best_logp = exhaustive_search(tiny, image[None], max_len=4)
    wide, wide_logp = beam_search(tiny, image[None], beam=81, max_len=4)
    assert torch.equal(wide[0], best) and abs(float(wide_logp) - best_logp) < 1e-4
    greedy_found += abs(float(sample_captions(tiny, image[None], max_len=4)[1]) - best_logp) < 1e-5
print(f"beam 81 == exhaustive search on 8 of 8 images; greedy found the most likely sequence on {greedy_found} of 8")

# %% [markdown]
# Over the test set: does a wider beam find more likely captions, and are they better captions?
# (`score_captions` parses each caption back into its five attributes.)

# %%
def caption_metrics(words, scenes):
    text = [decode(w) for w in words]
    scores = score_captions(text, scenes.attributes)
    scores["BLEU-4"] = corpus_bleu(text, scenes.captions())
    return scores


beams = {}
for beam in (1, 2, 3, 5):
    words, logp = beam_search(tell, test.images, beam=beam)
    beams[beam] = (logp, caption_metrics(words, test))
print(f"{'beam':>4} {'mean log-prob':>14} {'exact':>7} {'BLEU-4':>7}")
for beam, (logp, m) in beams.items():
    print(f"{beam:>4} {float(logp.mean()):>14.4f} {m['exact']:>7.3f} {m['BLEU-4']:>7.3f}")
assert torch.equal(beam_search(tell, test.images, beam=1)[0], greedy)  # beam 1 is greedy
for beam in (2, 3, 5):
    worse = int((beams[beam][0] < greedy_logp - 1e-4).sum())
    print(f"beam {beam}: less likely than greedy's caption on {worse} of {len(test)} scenes")
    assert float(beams[beam][0].mean()) >= float(greedy_logp.mean()), "on average a wider beam finds likelier captions"

# %% [markdown]
# Compare the rows: a wider beam raises the mean log-probability, a little, and the metrics barely move.
# (For one scene a wider beam *can* end less likely than greedy: greedy's prefix may be pruned on the way.
# Only a beam as wide as the search space is guaranteed to be at least as good.)
# Beam search improves the *search*, not the model: where the model is unsure which shape it sees, the
# more likely caption is not more often the right one. (NeuralTalk2 reported a small gain on COCO too,
# beam 2 over greedy.)
#
# ## 5. Is a caption right? BLEU, attributes, and controls
#
# **BLEU (Papineni et al. 2002)** compares n-grams with a reference: $p_n$ is the share of the
# hypothesis' n-grams ($n = 1..4$) found in the reference (each counted at most as often as it occurs
# there), over the whole corpus; $\text{BLEU} = \text{BP}\cdot\exp(\frac14\sum_n \log p_n)$ with the
# brevity penalty $\text{BP} = \min(1, e^{1 - r/c})$ for total reference and hypothesis lengths $r, c$.
# Our `corpus_bleu` must equal sacrebleu, the maintained reference implementation:

# %%
pairs = [("a red circle left of a green square", "a red circle left of a blue square"),
         ("a blue square above a red circle", "a red circle above a blue square"),
         ("a red circle", "a red circle left of a blue square")]
hyps, refs = [h for h, _ in pairs] + greedy_text, [r for _, r in pairs] + test.captions()
bleu_ours = corpus_bleu(hyps, refs)
bleu_ref = sacrebleu.corpus_bleu(hyps, [refs], smooth_method="none", tokenize="none").score / 100
print(f"BLEU-4 on {len(hyps)} pairs: ours {bleu_ours:.6f}, sacrebleu {bleu_ref:.6f}")
assert abs(bleu_ours - bleu_ref) < 1e-9

# %% [markdown]
# Now the trained model against three **negative controls**, each a way a captioner can look good
# without seeing: the most frequent training caption given to every scene (the language prior alone);
# the trained model given blank images; and the trained model given another scene's image
# (the test images shuffled).

# %%
prior_caption = Counter(train.captions()).most_common(1)[0][0]
blank = torch.zeros_like(test.images)
shuffled = test.images[torch.randperm(len(test), generator=torch.Generator().manual_seed(0))]
rows = {"Show and Tell, greedy": caption_metrics(greedy, test),
        "prior: most common caption": score_captions([prior_caption] * len(test), test.attributes),
        "model on blank images": caption_metrics(sample_captions(tell, blank)[0], test),
        "model on shuffled images": caption_metrics(sample_captions(tell, shuffled)[0], test)}
rows["prior: most common caption"]["BLEU-4"] = corpus_bleu([prior_caption] * len(test), test.captions())
print(f"the prior's caption: {prior_caption!r}")
print(f"{'':<28}" + "".join(f"{name:>10}" for name in ("exact", *ATTRIBUTES, "BLEU-4")))
for name, m in rows.items():
    print(f"{name:<28}" + "".join(f"{m[k]:>10.3f}" for k in ("exact", *ATTRIBUTES, "BLEU-4")))

# %% [markdown]
# The claims, each checked, with margins taken from the run. The model reads the colours and the
# relation almost always and the shapes often; every control is far below it on each. The table also
# shows what BLEU hides: a caption with one wrong shape still shares most of its n-grams with the
# reference, so the model's BLEU is far higher than its exact match. Per-attribute accuracy says which
# part is wrong.

# %%
model_row = rows["Show and Tell, greedy"]
for name in ("prior: most common caption", "model on blank images", "model on shuffled images"):
    assert model_row["exact"] > rows[name]["exact"] + 0.2, name
    assert model_row["shape 1"] > rows[name]["shape 1"] + 0.15, name
    assert model_row["BLEU-4"] > rows[name]["BLEU-4"] + 0.3, name
assert min(model_row[a] for a in ("colour 1", "relation", "colour 2")) > 0.9
assert min(model_row[a] for a in ("shape 1", "shape 2")) > 0.45 and model_row["exact"] > 0.25
assert model_row["BLEU-4"] > model_row["exact"] + 0.2, "BLEU gives credit for partly right captions"

# %% [markdown]
# ## 6. Show, Attend and Tell: where does each word look?
#
# Show and Tell sees the image once, through its initial state. With **attention** (注意力机制) the decoder
# looks at the feature grid again before every word, with lesson 08's scaled dot-product attention:
#
# $$q_t = h_{t-1} W_q^\top\ (B, A), \quad K = F W_k^\top\ (B, P, A), \quad
#   \alpha_t = \mathrm{softmax}\!\left(\frac{q_t K^\top}{\sqrt{A}}\right)\ (B, P), \quad
#   \mathrm{ctx}_t = \alpha_t F\ (B, C)$$
# $$h_t, c_t = \mathrm{LSTM}([E[y_{t-1}];\ \mathrm{ctx}_t],\ h_{t-1}, c_{t-1}), \qquad
#   z_t = [h_t;\ \mathrm{ctx}_t]\, W_o^\top + b_o$$
#
# The initial state comes from the mean of the grid, which does not say where things are: to name the
# left object first, the decoder has to look. $\alpha_t$ is a map over the 6x6 grid for every word.

# %%
start = time.perf_counter()
torch.manual_seed(0)
attend, attend_history = train_captioner(ShowAttendTell(len(WORDS)))
print(f"Show, Attend and Tell: {sum(p.numel() for p in attend.parameters()):,} weights, {STEPS} steps in "
      f"{time.perf_counter() - start:.1f} s")
attend_words, attend_logp, _ = sample_captions(attend, test.images)
rows["Show, Attend and Tell, greedy"] = caption_metrics(attend_words, test)
for name in ("Show and Tell, greedy", "Show, Attend and Tell, greedy"):
    print(f"{name:<30} exact {rows[name]['exact']:.3f}, BLEU-4 {rows[name]['BLEU-4']:.3f}")
fig, ax = plt.subplots(figsize=(7, 3))
for name, history in (("Show and Tell", tell_history), ("Show, Attend and Tell", attend_history)):
    line, = ax.plot(history.steps, history.smoothed_loss(), label=f"{name}, training")
    ax.plot(history.val_steps, history.val_loss, "o--", color=line.get_color(), label=f"{name}, validation")
ax.set(xlabel="step", ylabel="cross-entropy per word (smoothed)", yscale="log")
ax.legend()
plt.show()
assert rows["Show, Attend and Tell, greedy"]["exact"] > rows["Show and Tell, greedy"]["exact"] + 0.25

# %% [markdown]
# With the same encoder and the same steps the attention decoder is far ahead. Lesson 12 says why: Show
# and Tell reads the grid through one flatten and linear layer, which, like lesson 12's MLP, has to learn
# each shape at every position on its own. Attention reads the same features wherever the object is,
# and its weights say where that was.

# %% [markdown]
# **Does the map point at the named object?** For each colour and shape word of the reference caption
# (teacher-forced), take the grid cell with the largest attention and ask whether it overlaps the named
# object's box. By chance, a cell overlaps one object with the probability of the share of cells it
# covers. The negative control: the same measurement on an untrained attention decoder.

# %%
def attention_hits(model, scenes):
    """Share of colour and shape words whose arg-max attention cell overlaps the object they name, and chance."""
    _, maps = model(scenes.images, scenes.tokens[:, :-1], return_attention=True)  # (N, T, P)
    grid = model.encoder.grid
    cell = scenes.images.shape[-1] // grid
    lo = torch.arange(grid) * cell  # the pixel rows (or columns) of each cell: [lo, lo + cell)
    hits, chance = [], []
    for k in range(len(scenes)):
        targets = scenes.tokens[k, 1:].tolist()
        end = targets.index(EOS)
        for obj, positions in ((0, (1, 2)), (1, (end - 2, end - 1))):  # "a C S ..." and "... a C S <eos>"
            top, left, bottom, right = scenes.boxes[k, obj].tolist()
            rows_in = (lo < bottom) & (lo + cell > top)
            cols_in = (lo < right) & (lo + cell > left)
            covered = (rows_in[:, None] & cols_in[None, :]).flatten()
            for t in positions:
                hits.append(bool(covered[maps[k, t].argmax()]))
                chance.append(float(covered.float().mean()))
    return sum(hits) / len(hits), sum(chance) / len(chance)


with torch.no_grad():
    hit_rate, chance = attention_hits(attend, test)
    torch.manual_seed(0)
    untrained_rate, _ = attention_hits(ShowAttendTell(len(WORDS)).eval(), test)
print(f"colour and shape words whose attention peak is on the named object: trained {hit_rate:.3f}, "
      f"untrained {untrained_rate:.3f}, chance {chance:.3f}")
assert hit_rate > 2 * chance, "the attention should point at the named object far more often than chance"
assert untrained_rate < chance + 0.2, "an untrained decoder must not pass the check above"

# %%
view_index = 0
_, maps = attend(test.images[view_index:view_index + 1], test.tokens[view_index:view_index + 1, :-1],
                 return_attention=True)
caption_words = test.captions()[view_index].split() + ["<eos>"]
fig, axes = plt.subplots(1, len(caption_words) + 1, figsize=(13, 1.9))
axes[0].imshow(test.images[view_index].permute(1, 2, 0))
axes[0].set_title("scene", fontsize=9)
for ax, word, amap in zip(axes[1:], caption_words, maps[0].detach()):
    ax.imshow(test.images[view_index].permute(1, 2, 0) * 0.5)
    ax.imshow(amap.view(6, 6), cmap="magma", alpha=0.6, extent=(-0.5, 23.5, 23.5, -0.5))
    ax.set_title(word, fontsize=9)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Composition: a colour and a shape never seen together
#
# The `novel` scenes each show a held-out pair, say a red square: the model has seen red things and
# squares, never a red square. Both models read the colours as well as before. The shapes of the held-out
# objects are another matter:

# %%
def held_out_report(model, scenes):
    text = [decode(w) for w in sample_captions(model, scenes.images)[0]]
    said_held = sum(any(h in c for h in held_words) for c in text) / len(text)
    return score_captions(text, scenes.attributes), said_held


for name, model in (("Show and Tell", tell), ("Show, Attend and Tell", attend)):
    scores, said_held = held_out_report(model, novel)
    rows[f"{name}, novel"] = scores
    print(f"{name:<22} on novel scenes: exact {scores['exact']:.3f}, colour 1 {scores['colour 1']:.3f}, "
          f"shape 1 {scores['shape 1']:.3f}; captions that name a held-out pair: {said_held:.3f}")
    assert scores["colour 1"] > 0.8 and scores["colour 2"] > 0.8, "colours are still read"
    assert scores["exact"] < 0.1, "composition fails"
    assert said_held < 0.1, "the decoder does not say a pair it never heard"

# %% [markdown]
# The models do not compose: they read the colour, then say a shape that has followed this colour in
# training. The decoder is a language model too, and the training captions taught it that "red" is never
# followed by "square"; that prior outweighs the image. Larger captioning models show the same failure
# on held-out combinations (Nikolaus et al. 2019, "Compositional generalization in image captioning").
#
# ## 8. Play: a scene, its captions and its attention, word by word
#
# Pick a test scene and a beam width. The readout shows the greedy and the beam caption with their
# log-probabilities; the panels show where the attention decoder looked for each word of the beam caption.

# %%
caption_widget(attend, test, index=0, beam=3)

# %% [markdown]
# ## Exercises
#
# 1. **Predict, then run.** How many candidates does beam search score at each step with beam $k$ and a
#    vocabulary of $V$ words, and how many sequences would exhaustive search score for captions of 10
#    words from this vocabulary? Check the first count by instrumenting `beam_search`.
# 2. **Temperature.** Sample 200 captions of one test scene at temperatures 0.5, 1 and 2. Predict how the
#    share of grammatical captions and of exactly right captions changes, then measure it.
# 3. **Without teacher forcing.** Train the attention decoder for the same steps, feeding it its own
#    greedy word at each step instead of the true one (free running). Compare the loss and the exact
#    match with teacher forcing's.
# 4. **Length normalisation.** Beam search with the summed log-probability prefers short sequences.
#    Add a length penalty (divide the score by the length) and show on the tiny model of section 4 that it
#    can change the chosen sequence.
# 5. **Teach the pair.** Add a few hundred training scenes that contain one of the held-out pairs and
#    retrain. Predict first: does the model now caption that pair, and the other held-out pair?
#
# Worked solutions, each one run and checked: [solutions/13_captioning.ipynb](solutions/13_captioning.ipynb).
#
# ## Summary
#
# - A captioner is an encoder (a CNN: image to features) and a decoder (an LSTM language model that
#   starts from the image, or looks at it again at every word through attention).
# - Teacher forcing trains all steps of a caption in one pass, feeding the true previous word; the loss
#   is the cross-entropy of the next words with padding left out, equal to `F.cross_entropy` with
#   `ignore_index`.
# - Decoding: greedy (arg-max), sampling with a temperature (the course's sampler), and beam search,
#   which keeps the $k$ most likely prefixes; $k = 1$ is greedy, and a beam as wide as the search space is
#   exhaustive search. On average a wider beam finds likelier captions; here it gains little.
# - BLEU counts shared n-grams and flatters a fixed template; on scenes with known contents, exact match
#   and per-attribute accuracy against negative controls (the prior, blank or shuffled images) say more.
# - Attention maps point at the object a word names far more often than chance.
# - A colour and a shape never seen together are not composed: the decoder's language prior wins.
#
# **Next:** lesson 14 turns to learning from rewards instead of labels.
#
# | English | 中文 | one line |
# |---|---|---|
# | image captioning | 图像描述生成 | writing a sentence about an image with an encoder and a decoder |
# | encoder | 编码器 | the network that turns the input (here an image) into features |
# | decoder | 解码器 | the network that writes the output (here words) from those features |
# | teacher forcing | 教师强制 | training on the true previous word instead of the model's own guess |
# | greedy decoding | 贪心解码 | taking the most likely word at every step |
# | beam search | 束搜索 | keeping the k most likely prefixes at every step |
# | attention | 注意力机制 | a softmax-weighted look at the features, recomputed for every word |
# | BLEU score | BLEU 分数 | the share of n-grams shared with a reference, with a brevity penalty |
# | compositional generalization | 组合泛化 | handling combinations of known parts never seen together |
# | negative control | 对照实验 | the same check on a broken variant, which must fail it |
