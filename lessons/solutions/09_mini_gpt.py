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
# # 09 · A mini-GPT on Python source: worked solutions
#
# One section per exercise of [lesson 09](../09_mini_gpt.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted. The GPT is the
# lesson's (`GPT(GPTConfig(V, 64, n_layer=3, n_head=4, n_embd=96))`, 80 steps of 32 windows with the lesson's
# AdamW recipe, trained by `fit`). To fit the time budget, exercise 2's "3x the steps" is asked at a third of
# the scale (27 steps against 80), and exercise 3 is answered from the cost formula with a timing rather than
# four more trainings.

# %%
import math
import re
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab import evaluate, fit, seed_everything, warmup_cosine
from karpa_lab.data import TextCorpus
from karpa_lab.models.attention import sinusoidal_positions
from karpa_lab.models.char_lstm import CharLSTM, window_loss
from karpa_lab.models.gpt import GPT, GPTConfig

torch.set_num_threads(1)
start = time.process_time()
seed_everything(0)
corpus = TextCorpus.python_stdlib(max_chars=400_000)
V, BLOCK, BATCH = corpus.vocab_size, 64, 32
config = GPTConfig(V, BLOCK, n_layer=3, n_head=4, n_embd=96)
val_batches = [corpus.random_batch("val", 64, BLOCK, generator=torch.Generator().manual_seed(i)) for i in range(2)]


def train_gpt(model: nn.Module, steps: int, block: int = BLOCK) -> nn.Module:
    """The lesson's recipe: AdamW (lr 2e-3), warm-up + cosine, clipping at 1.0, random windows, window_loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
    fit(model, corpus.batch_fn("train", BATCH, block), steps=steps, optimizer=optimizer, step_fn=window_loss,
        schedule=warmup_cosine(steps // 10, steps), clip_grad=1.0, progress=False, log_every=steps, device="cpu")
    return model


seed_everything(0)
gpt = train_gpt(GPT(config), 80)
val_loss = evaluate(gpt, val_batches, step_fn=window_loss)["loss"]
print(f"the lesson's GPT after 80 steps: validation loss {val_loss:.3f} nats/char")

# %% [markdown]
# ## 1. Predict, then run
#
# *Sample from the GPT with `temperature=0.3` and `temperature=1.5`, `top_k=None`. Which one produces
# valid-looking Python, and which one invents identifiers? Why does top-k matter more at high temperature?*
#
# **Reasoning.** Dividing the logits by $\tau$ raises every probability to the power $1/\tau$ and
# renormalises. At $\tau = 0.3$ that is about a cube: the likely characters take nearly all the mass, and the
# samples stay on the well-trodden paths (spaces, indentation, common letter sequences): safe and repetitive,
# the *look* of Python. At $\tau = 1.5$ the distribution flattens and the long tail of unlikely characters,
# each with a tiny probability but together a lot, gets sampled: stray symbols inside made-up words. Top-k
# cuts exactly that tail, and there is much more of it at high temperature. **Predictions**, measured by how
# surprising a sample's characters are under the training text's character frequencies (the mean of
# $-\log p_{\text{unigram}}(c)$ over the sample): least at 0.3, most at 1.5, and at 1.5 top-k 10 brings it
# down; and the probability mass outside the 10 most likely characters is many times larger at 1.5 than at
# 0.3. The share of identifiers that occur in the training text is printed too.

# %%
known = set(re.findall(r"[A-Za-z_]\w*", corpus.decode(corpus.train)))
unigram = torch.bincount(corpus.train, minlength=V).double() + 1
surprise_of = -torch.log(unigram / unigram.sum())  # (V,) nats per character
prompt = corpus.encode("    def __init__(self")[None]

surprise = {}
for temperature, top_k in ((0.3, None), (1.5, None), (1.5, 10)):
    out = gpt.generate(prompt, 300, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(42))
    new = out[0, prompt.shape[1]:]
    words = re.findall(r"[A-Za-z_]\w*", corpus.decode(new))
    surprise[(temperature, top_k)] = surprise_of[new].mean().item()
    print(f"--- temperature {temperature}, top_k {top_k}: unigram surprise {surprise[(temperature, top_k)]:.2f} "
          f"nats/char; {len(words)} identifiers, {sum(w in known for w in words) / max(1, len(words)):.0%} of them "
          "occur in the training text")
    print(corpus.decode(out[0])[:240])
x_val, _ = val_batches[0]
with torch.no_grad():
    logits = gpt(x_val)[0][:, -1]  # (64, V): the next character after each validation window
tail = {t: float(1 - torch.softmax(logits / t, -1).topk(10, -1).values.sum(-1).mean()) for t in (0.3, 1.5)}
print(f"probability mass outside the top 10 characters: {tail[0.3]:.4f} at temperature 0.3, {tail[1.5]:.4f} at 1.5")
assert surprise[(0.3, None)] < surprise[(1.5, 10)] < surprise[(1.5, None)]
assert tail[1.5] > 10 * tail[0.3]

# %% [markdown]
# The ordering is as predicted (asserted): 0.3 writes the most ordinary characters, 1.5 the most surprising
# ones, and top-k pulls 1.5 back; the last line shows why top-k matters there: the characters outside the
# top 10 hold more than ten times the mass at 1.5 that they hold at 0.3 (asserted). Honest about this model:
# after 80 CPU steps it writes no valid Python at any temperature; its identifiers are mostly invented
# (printed shares). At 0.3 it *looks* like code, mostly indentation and common letters; at 1.5 it invents
# words with symbols inside.

# %% [markdown]
# ## 2. A bracket head
#
# *Write the score for the hypothesis "from a `)`, a head looks at its matching `(`" (a stack over the
# characters of each window finds the pairs), measure it for every head, and compare with uniform attention.
# Then train the GPT for 3x the steps: does the best head get sharper?*
#
# **The score.** Scan each window left to right with a stack: push the position of every `(`, and at a `)`
# pop the matching `(` (a `)` with an empty stack is unmatched inside this window and skipped). For each pair
# $(s, t)$ the head's weight from query $t$ to key $s$ is what a bracket head would make large; the score of a
# head is its mean over all pairs, and uniform causal attention would give the mean of $1/(t+1)$. The
# lesson's criterion for "a head that does this" is a score above 3 times uniform. At a third of the scale
# the second question is: 27 steps against the 80 of the lesson's GPT. **Prediction:** matching brackets
# needs a stack, which one attention layer cannot do in general; what a small model learns first is to look
# at the last few characters, which scores above uniform on close pairs only. So at this budget: no head
# passes the criterion, and 3x the steps do not make one.

# %%
x_brackets, _ = corpus.random_batch("val", 128, BLOCK, generator=torch.Generator().manual_seed(7))
open_id, close_id = int(corpus.encode("(")[0]), int(corpus.encode(")")[0])
pairs = []
for b, row in enumerate(x_brackets.tolist()):
    stack = []
    for t, c in enumerate(row):
        if c == open_id:
            stack.append(t)
        elif c == close_id and stack:
            pairs.append((b, t, stack.pop()))
bb, tt, ss = (torch.tensor(v) for v in zip(*pairs))
uniform = (1.0 / (tt + 1).double()).mean().item()


def bracket_score(model: GPT) -> torch.Tensor:
    with torch.no_grad():
        _, _, w = model(x_brackets, need_weights=True)  # (layers, B, heads, T, T)
    return w[:, bb, :, tt, ss].mean(dim=0)  # (pairs, layers, heads) -> (layers, heads)


seed_everything(0)
short = train_gpt(GPT(config), 27)
scores = {"27 steps": bracket_score(short), "80 steps": bracket_score(gpt), "untrained": bracket_score(GPT(config))}
print(f"{len(pairs)} matched ( ) pairs in 128 windows, median distance {(tt - ss).median().item()} characters; "
      f"uniform attention would give {uniform:.3f}")
for name, s in scores.items():
    layer, head = divmod(int(s.argmax()), s.shape[1])
    print(f"{name:<10} best head: layer {layer}, head {head}: {s.max():.3f} ({s.max() / uniform:.1f}x uniform); "
          f"all heads {[round(v, 3) for v in s.flatten().tolist()]}")
assert all(s.max() < 3 * uniform for s in scores.values()), "no bracket head at this budget"
assert scores["80 steps"].max() <= scores["27 steps"].max(), "and 3x the steps do not sharpen one"
assert scores["untrained"].max() < 1.2 * uniform

# %% [markdown]
# No head of either model passes the 3x criterion (asserted), and the best score does not grow from 27 to
# 80 steps (asserted); the untrained GPT, the control, sits at uniform. The best heads' modest excess over
# uniform is what attention to the last few characters earns on pairs that are close (the median distance is
# printed). A bracket head, if this model can grow one at all, needs far more training than this budget;
# a measured "no" is still an answer, and the score is ready for a longer run.

# %% [markdown]
# ## 3. Context length
#
# *Train both models on windows of 128 characters instead of 64 (give the GPT `block_size=128`). Which one
# gains more from the longer window, per second and per character?*
#
# **Model answer.** *Per character*, the GPT should gain more: attention reads any of the earlier characters
# directly, so a longer window gives it more to copy from (an identifier defined 100 characters back), while
# the LSTM's state already fades over tens of characters and mostly cannot use what lies further back (lesson
# 09's copy task in section 5: its LSTM did not carry 16 symbols across 17 steps). *Per second*, the longer
# window costs the GPT more: its attention term $12\,n_{\text{layer}}\,d\,T$ per token doubles with $T$, while
# the LSTM's cost per character does not depend on the window at all. The cost half of the answer is
# computed and timed below (training steps of each model at both windows); the learning half needs the four
# runs of the exercise, which take longer than this notebook may.

# %%
def cpu_per_char(model: nn.Module, block: int, repeats: int = 5) -> float:
    """CPU seconds per character of one training step: the fastest of ``repeats`` steps, after a warm-up
    (the fastest, because a busy machine only ever adds time)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = corpus.random_batch("train", BATCH, block, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(repeats + 1):
        t0 = time.process_time()
        fit(model, lambda: batch, steps=1, optimizer=optimizer, step_fn=window_loss, progress=False, device="cpu",
            verbose=False)
        times.append(time.process_time() - t0)
    return min(times[1:]) / (BATCH * block)


gpt128 = GPT(replace(config, block_size=128))
flops = {T: gpt128.flops_per_token(context=T) for T in (64, 128)}
print(f"GPT training FLOPs per character: {flops[64] / 1e6:.2f}M at T = 64, {flops[128] / 1e6:.2f}M at T = 128 "
      f"({flops[128] / flops[64]:.2f}x); the attention term equals the weights' 6N at T = "
      f"{6 * gpt128.num_params() / (12 * 3 * 96):.0f}")
lstm = CharLSTM(V, hidden_size=224)
timing = {(name, T): cpu_per_char(m, T) for name, m in (("GPT", gpt128), ("LSTM", lstm)) for T in (64, 128)}
for (name, T), sec in timing.items():
    print(f"{name:<5} T = {T:>3}: {1e6 * sec:.1f} µs of CPU per character")
assert flops[128] > flops[64] and abs(flops[128] - flops[64] - 12 * 3 * 96 * 64) < 1

# %% [markdown]
# The FLOPs per character grow by the attention term alone (asserted: exactly $12 \cdot 3 \cdot 96 \cdot 64$
# more), which at this size is a small share (the printed ratio): the attention term only matches the
# weights' $6N$ at the context printed on the first line. The timings (printed, the fastest of five steps)
# are of the same order at both windows, for both models. So per second, at these sizes, the longer window
# is nearly free for both, and the per-character question (does the GPT use the extra 64 characters?) is
# the one that decides; it needs the four trainings of the exercise, at a budget above this notebook's.

# %% [markdown]
# ## 4. Change one number
#
# *Give the GPT `n_layer=2, n_embd=128` (about the same parameters, fewer, wider kernels). Predict the effect
# on its characters/s in the race, then measure.*
#
# **Prediction.** With $N = Vd + L(12d^2 + 13d) + 2d$ the wide model has about a fifth more parameters, and
# with them more FLOPs per character; naively its characters/s should drop by that much. But lesson 09
# measured that this GPT runs far below the core's matmul peak because a block is a dozen small kernels: two
# blocks instead of three means a third fewer kernels, and 128-wide matrices use the core better than 96-wide
# ones. **Prediction: the characters/s fall by less than the FLOPs grow, or not at all**: the wide model does
# more FLOPs per second.

# %%
wide = GPT(replace(config, n_layer=2, n_embd=128))
for model in (GPT(config), wide):
    d, L = model.config.n_embd, model.config.n_layer
    assert model.num_params() == V * d + L * (12 * d * d + 13 * d) + 2 * d
speed = {}
for name, model in (("3 x 96", GPT(config)), ("2 x 128", wide)):
    sec = cpu_per_char(model, BLOCK)
    speed[name] = (model.num_params(), model.flops_per_token(), 1 / sec, model.flops_per_token() / sec)
    print(f"{name:<8} {speed[name][0]:,} parameters, {speed[name][1] / 1e6:.2f} MFLOP/char, "
          f"{speed[name][2]:,.0f} chars/s of CPU, {speed[name][3] / 1e9:.1f} GFLOP/s")
flop_growth = speed["2 x 128"][1] / speed["3 x 96"][1]
speed_ratio = speed["2 x 128"][2] / speed["3 x 96"][2]
print(f"FLOPs per char x{flop_growth:.2f}; characters/s x{speed_ratio:.2f}")
assert 1.1 < speed["2 x 128"][0] / speed["3 x 96"][0] < 1.3
assert speed_ratio > 1 / flop_growth, "the wider kernels run at more FLOP/s"

# %% [markdown]
# The wide model has the printed extra parameters and FLOPs, and its characters per CPU second do not drop in
# proportion to its FLOPs (both ratios printed; asserted: a higher FLOP rate). Fewer, wider kernels buy efficiency; whether that
# converts into a lower loss at equal time is the race of the lesson, run with this configuration.

# %% [markdown]
# ## 5. Implement the variant
#
# *Replace the learned position table with the sinusoidal encodings of lesson 08. Can the KV cache then keep
# working past `block_size` without a rebuild (what would you do with positions beyond the table)? What does
# the model do on contexts longer than it was trained on?*
#
# **The variant.** The GPT adds `wpe(pos)`; swap `wpe` for a frozen `nn.Embedding` holding the sinusoids
# (lesson 08's `sinusoidal_positions`), with room for 192 positions, and train it on the same 64-character
# windows. The sinusoids have a root-mean-square of $1/\sqrt 2$ while the token embeddings start at 0.02:
# unscaled, the positions would drown the tokens, so the table is scaled to the embeddings' 0.02. **The cache.** With learned positions, the table ends at `block_size`; past it the context is
# cropped and every cached token's position shifts by one, so the cache is rebuilt each step. A sinusoid is
# defined at every position, so one can keep each token's absolute position for ever: keys never change, the
# cache is never rebuilt; a sliding window simply drops the oldest entries. The catch is the second question.
# **Prediction:** on 192-character windows the loss at positions beyond 64, which the model never saw
# (neither the positions nor that many keys), is higher than within the first 64.

# %%
seed_everything(0)
sinus = GPT(replace(config, block_size=192))
table = 0.02 * math.sqrt(2) * sinusoidal_positions(192, config.n_embd)  # root-mean-square 0.02
sinus.wpe = nn.Embedding.from_pretrained(table, freeze=True)
train_gpt(sinus, 80)
print(f"sinusoidal GPT, validation loss on 64-character windows {evaluate(sinus, val_batches, step_fn=window_loss)['loss']:.3f} "
      f"(learned positions: {val_loss:.3f})")
x_long, y_long = corpus.random_batch("val", 64, 192, generator=torch.Generator().manual_seed(11))
with torch.no_grad():
    per_position = F.cross_entropy(sinus(x_long)[0].transpose(1, 2), y_long, reduction="none").mean(0)  # (192,)
inside, beyond = per_position[:64].mean().item(), per_position[64:].mean().item()
print(f"192-character windows: loss at positions 0-63 {inside:.3f}, at 64-191 {beyond:.3f} nats/char")
try:
    gpt(x_long)
except ValueError as err:
    print("the learned-position GPT on the same windows -> ValueError:", err)
cached = sinus.generate(prompt, 150, temperature=0.8, top_k=10, generator=torch.Generator().manual_seed(0))
uncached = sinus.generate(prompt, 150, temperature=0.8, top_k=10, use_cache=False,
                          generator=torch.Generator().manual_seed(0))
print(f"sampling {prompt.shape[1] + 150} characters, past 64, with and without the cache: identical "
      f"{torch.equal(cached, uncached)}")
assert torch.equal(cached, uncached)
assert beyond > inside
assert not sinus.wpe.weight.requires_grad and torch.equal(sinus.wpe.weight, table)  # fixed, untouched by training

# %% [markdown]
# The sinusoidal GPT learns about as well on its own windows (both losses printed), and past 64 characters the
# cache keeps working with no rebuild, the samples identical with and without it (asserted). But the model
# does worse at the positions it was never trained on (asserted: a higher loss beyond 64): a formula for
# position 150 is not an understanding of it, and attention over 150 keys spreads its weights thinner than
# any training window did. This is why long-context models use relative positions (RoPE, ALiBi) and are
# trained, or fine-tuned, at the lengths they serve.

# %%
print(f"CPU time of this notebook: {time.process_time() - start:.1f} s")
