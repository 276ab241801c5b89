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
# # 13 · Image captioning: worked solutions
#
# One section per exercise of [lesson 13](../13_captioning.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted. The trained
# answers use the attention decoder (Show, Attend and Tell), which learns these scenes fastest.

# %%
import itertools

import torch

from karpa_lab import by_scale, fit, seed_everything, warmup_cosine
from karpa_lab.data.scenes import (
    EOS,
    HELD_OUT,
    WORDS,
    CaptionScenes,
    caption_splits,
    decode,
    make_scenes,
    score_captions,
)
from karpa_lab.models.captioning import (
    ShowAttendTell,
    beam_search,
    caption_loss,
    sample_captions,
    sequence_logprob,
    teacher_forcing_step,
)

seed_everything(0)
torch.set_num_threads(1)
splits = caption_splits(n_train=by_scale(3000, 20000), n_eval=300)
train, test, novel = splits["train"], splits["test"], splits["novel"]
STEPS = by_scale(150, 2000)


def train_captioner(scenes, step_fn=teacher_forcing_step, seed=0):
    torch.manual_seed(seed)
    model = ShowAttendTell(len(WORDS))
    history = fit(model, scenes.loader(batch_size=64), steps=STEPS, lr=5e-3, schedule=warmup_cosine(STEPS // 10, STEPS),
                  step_fn=step_fn, device="cpu", verbose=False)
    return model.eval(), history


def exact(model, scenes):
    return score_captions([decode(w) for w in sample_captions(model, scenes.images)[0]], scenes.attributes)


# %% [markdown]
# ## 1. Predict, then run
#
# *How many candidates does beam search score at each step with beam $k$ and a vocabulary of $V$ words,
# and how many sequences would exhaustive search score for captions of 10 words from this vocabulary?
# Check the first count by instrumenting `beam_search`.*
#
# Each of the $k$ prefixes is extended by each of the $V$ words: $kV$ candidates per step and image
# ($<pad>$ and $<bos>$ among them at $-\infty$, so $k(V-2)$ real ones), of which $k$ are kept. Exhaustive
# search over the $V - 2 = 12$ words a caption can contain, 10 words long, scores $12^{10} \approx 6.2
# \cdot 10^{10}$ sequences (and more with the shorter ones), where beam search with $k = 3$ scores
# $3 \cdot 14 = 42$ candidates per step.
# Instrumented: wrap the model's `step` and count the rows of logits it returns.

# %%
torch.manual_seed(0)
counted = ShowAttendTell(len(WORDS)).eval()
rows = []
original_step = counted.step
counted.step = lambda words, state: (rows.append(len(words)), original_step(words, state))[1]
images = test.images[:4]
beam_search(counted, images, beam=3, max_len=10)
candidates = [r * len(WORDS) for r in rows]
print(f"rows of logits per step: {rows}; candidates per step: {candidates} = 4 images x 3 x {len(WORDS)}")
print(f"exhaustive search over captions of 10 words: 12^10 = {12**10:,} sequences")
assert all(r == 4 * 3 for r in rows) and candidates[0] == 4 * 3 * len(WORDS)

# %% [markdown]
# ## 2. Temperature
#
# *Sample 200 captions of one test scene at temperatures 0.5, 1 and 2. Predict how the share of
# grammatical captions and of exactly right captions changes, then measure it.*
#
# Dividing the logits by $\tau$ sharpens the distribution for $\tau < 1$ and flattens it for $\tau > 1$.
# A trained model puts almost all its mass on the right word at each step, so at 0.5 nearly every sample is
# the right caption; at 2 the unlikely words get real probability at every one of the nine steps, so both
# shares fall, the exact one first (one wrong word spoils it) and then the grammatical one.

# %%
model, history = train_captioner(train)
print(f"trained: exact match on the test scenes {exact(model, test)['exact']:.3f}")
scene = test.images[:1].repeat(200, 1, 1, 1)
g = torch.Generator().manual_seed(0)
shares = {}
for temperature in (0.5, 1.0, 2.0):
    text = [decode(w) for w in sample_captions(model, scene, temperature=temperature, generator=g)[0]]
    s = score_captions(text, test.attributes[:1].repeat(200, 1))
    shares[temperature] = (s["grammatical"], s["exact"])
    print(f"temperature {temperature}: grammatical {s['grammatical']:.3f}, exact {s['exact']:.3f}; e.g. {text[0]!r}")
assert shares[0.5][1] > shares[2.0][1] + 0.2 and shares[0.5][0] >= shares[2.0][0]

# %% [markdown]
# ## 3. Without teacher forcing
#
# *Train the attention decoder for the same steps, feeding it its own greedy word at each step instead
# of the true one (free running). Compare the loss and the exact match with teacher forcing's.*
#
# Early in training the model's own words are
# wrong, so from the first mistake on it is scored on targets that no longer follow from its inputs: the
# gradient teaches it little about the words after a mistake, and learning is slower. Expect a higher
# training loss through the run, and a higher test loss (teacher-forced, as the loss is defined) after the
# same number of steps. The exact match need not differ: these captions are short and easy, so once the
# model's own words are mostly right, free running trains on nearly the true inputs anyway.

# %%
def free_running_step(model, batch):
    images, tokens = batch
    state, words, logits = model.start(images), tokens[:, 0], []
    for _ in range(tokens.shape[1] - 1):
        out, state, _ = model.step(words, state)
        logits.append(out)
        words = out.argmax(dim=-1).detach()  # the model's own guess, not the true word
    return caption_loss(torch.stack(logits, dim=1), tokens[:, 1:])


free, free_history = train_captioner(train, step_fn=free_running_step)
with torch.no_grad():
    loss_tf = float(teacher_forcing_step(model, (test.images, test.tokens)))
    loss_fr = float(teacher_forcing_step(free, (test.images, test.tokens)))
exact_tf, exact_fr = exact(model, test)["exact"], exact(free, test)["exact"]
mean_tf, mean_fr = (sum(h.train_loss) / len(h.train_loss) for h in (history, free_history))
print(f"mean training loss over the run: teacher forcing {mean_tf:.3f}, free running {mean_fr:.3f}")
print(f"after {STEPS} steps, on the test scenes: teacher forcing loss {loss_tf:.4f}, exact {exact_tf:.3f}; "
      f"free running loss {loss_fr:.4f}, exact {exact_fr:.3f}")
assert mean_fr > 1.2 * mean_tf and loss_fr > 1.3 * loss_tf
assert min(exact_tf, exact_fr) > 0.9

# %% [markdown]
# ## 4. Length normalisation
#
# *Beam search with the summed log-probability prefers short sequences. Add a length penalty (divide the
# score by the length) and show on the tiny model of section 4 that it can change the chosen sequence.*
#
# Every word adds a negative log-probability, so the sum falls with length, and a sequence that ends
# early wins unless its words are much less likely. Dividing by the length compares the *average*
# log-probability per word instead, which does not fall with length. On the tiny untrained model, where
# every word has about a third of the mass, the sum picks the shortest sequences and the average picks
# longer ones. Scored exhaustively over all 31 sequences of at most four words (so no beam can miss one):

# %%
torch.manual_seed(3)
tiny = ShowAttendTell(5).eval()  # <pad>, <bos>, <eos>, two words
sequences = [list(s[:s.index(EOS) + 1]) if EOS in s else list(s) for s in itertools.product((2, 3, 4), repeat=4)]
sequences = [list(s) for s in {tuple(s) for s in sequences}]
padded = torch.tensor([s + [0] * (4 - len(s)) for s in sequences])
lengths = torch.tensor([len(s) for s in sequences], dtype=torch.float32)
changed, longer = 0, []
for image in test.images[:8]:
    logp = sequence_logprob(tiny, image[None].expand(len(sequences), -1, -1, -1), padded)
    by_sum, by_mean = int(logp.argmax()), int((logp / lengths).argmax())
    changed += by_sum != by_mean
    longer.append((lengths[by_mean] - lengths[by_sum]).item())
    assert abs(float(logp[by_sum]) - float(beam_search(tiny, image[None], beam=81, max_len=4)[1])) < 1e-4
print(f"{len(sequences)} sequences; the length penalty changes the choice on {changed} of 8 images, "
      f"making it longer by {sum(longer) / 8:.2f} words on average")
assert changed >= 6 and min(longer) >= 0

# %% [markdown]
# ## 5. Teach the pair
#
# *Add a few hundred training scenes that contain one of the held-out pairs and retrain. Predict first:
# does the model now caption that pair, and the other held-out pair?*
#
# The failure of section 7 was the decoder's language prior: it had never heard "red square". Scenes
# with red squares fix that prior for that pair only; "blue triangle" is still never heard, so those
# scenes should still be captioned wrongly. Prediction: the taught pair's scenes are now mostly right, the
# other pair's stay near zero.

# %%
taught, other = HELD_OUT
extra = make_scenes(400, seed=10, require=[taught], exclude=[other])
mixed = CaptionScenes(*(torch.cat([getattr(train, f), getattr(extra, f)]) for f in ("images", "tokens", "attributes", "boxes")))
retrained, _ = train_captioner(mixed)
text = [decode(w) for w in sample_captions(retrained, novel.images)[0]]
refs = novel.captions()
has = lambda pair, caption: " ".join(pair) in caption
only_taught = [k for k, r in enumerate(refs) if has(taught, r) and not has(other, r)]
only_other = [k for k, r in enumerate(refs) if has(other, r) and not has(taught, r)]
right = lambda ks: sum(text[k] == refs[k] for k in ks) / len(ks)
print(f"novel scenes with only {' '.join(taught)}: {len(only_taught)}, exact {right(only_taught):.3f}; "
      f"with only {' '.join(other)}: {len(only_other)}, exact {right(only_other):.3f}")
assert right(only_taught) > 0.5 and right(only_other) < 0.1
