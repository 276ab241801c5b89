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
# # Lab 06 · Beam search
#
# A captioning model or a language model gives, at each step, a probability for every next word; a
# caption is the sequence you pick from them. Greedy decoding takes the best word each time and can miss
# the best sequence; exhaustive search finds it but costs $V^T$ evaluations. Beam search keeps the $k$ best
# partial sequences at every step. You will write the score of a sequence and beam search over a small
# language model given as a table, and your search is graded against exhaustive search and against the
# grader's own beam search on models you do not see.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `sequence_logprob`: the score of a sequence | 2 |
# | 2 | `beam_search` | 1 + 3 + 2 |
# | 3 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong. The teacher's grader runs those tests
# and hidden ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename
# the functions, and do not use `karpa_lab.models.captioning` in your code. Before you hand it in:
# *Kernel → Restart Kernel and Run All Cells*; the notebook runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import itertools
import warnings

import torch

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points
EOS = 0  # token 0 ends a sequence; it is also the context a sequence starts from


def random_model(steps: int, vocab: int, seed: int, sharpness: float = 2.0) -> torch.Tensor:
    """A small language model as a table (steps, V, V): logp[t, a, b] = log P(x_{t+1} = b | x_t = a), float64."""
    gen = torch.Generator().manual_seed(seed)
    scores = sharpness * torch.randn(steps, vocab, vocab, generator=gen, dtype=torch.float64)
    return torch.log_softmax(scores, dim=2)


def score_of(logp: torch.Tensor, tokens) -> float:
    """log P(tokens), the terms added one step at a time, in order."""
    score, last = 0.0, EOS
    for t, token in enumerate(tokens):
        score += float(logp[t, last, token])
        last = token
    return score


def exhaustive_search(logp: torch.Tensor) -> list[tuple[list[int], float]]:
    """Every finished sequence (ended by EOS, or T tokens long) with its log-probability, best first."""
    steps, vocab, finished = logp.shape[0], logp.shape[1], []
    for length in range(1, steps + 1):
        for seq in itertools.product(range(vocab), repeat=length):
            if EOS in seq[:-1] or (length < steps and seq[-1] != EOS):
                continue  # nothing follows an EOS; a sequence shorter than T must end with one
            finished.append((list(seq), score_of(logp, seq)))
    return sorted(finished, key=lambda item: -item[1])


def greedy(logp: torch.Tensor) -> tuple[list[int], float]:
    """The best token at every step."""
    seq, last = [], EOS
    for t in range(logp.shape[0]):
        last = int(logp[t, last].argmax())
        seq.append(last)
        if last == EOS:
            break
    return seq, score_of(logp, seq)


# %% [markdown]
# ## The model
#
# The vocabulary is $\{0, 1, \dots, V-1\}$ and token 0 is EOS (end of sequence). The model is a table
# `logp` (T, V, V): `logp[t, a, b]` $= \log P(x_{t+1} = b \mid x_t = a)$ at step t (counted from 0), and
# a sequence starts from the context $x_0 = $ EOS. A sequence $x_1 \dots x_n$ is **finished** when it ends
# with EOS or has T tokens; nothing follows an EOS. Its score is its log-probability
#
# $$\log P(x_1 \dots x_n) = \sum_{t=1}^{n} \text{logp}[t-1,\, x_{t-1},\, x_t] \qquad (x_0 = \text{EOS}).$$
#
# Greedy decoding misses the best sequence on this model (run the cell):

# %%
logp = random_model(steps=4, vocab=4, seed=3)
greedy_seq, greedy_score = greedy(logp)
best_seq, best_score = exhaustive_search(logp)[0]
print(f"greedy     {greedy_seq} log P = {greedy_score:.4f}")
print(f"exhaustive {best_seq} log P = {best_score:.4f}")
assert best_score > greedy_score, "on this model greedy decoding misses the best sequence"

# %% [markdown]
# ## Part 1 · The score of a sequence
#
# **Task 1.** Write `sequence_logprob(logp, tokens)`: the log-probability (a Python float) of the list
# `tokens` $= [x_1, \dots, x_n]$, starting from the context EOS, by the formula above. Add the terms one
# step at a time, in order (then your scores equal the grader's to the last digit).

# %% nbgrader={"grade": false, "grade_id": "sequence_logprob", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sequence_logprob(logp, tokens):
    """log P(tokens) under the table logp (T, V, V), from the context EOS."""
    ### BEGIN SOLUTION
    score, last = 0.0, EOS
    for t, token in enumerate(tokens):
        score += float(logp[t, last, token])
        last = token
    return score
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_logprob", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
logp = random_model(steps=3, vocab=5, seed=0)
for tokens, want in [([0], float(logp[0, 0, 0])), ([2, 0], float(logp[0, 0, 2] + logp[1, 2, 0])),
                     ([1, 1, 3], float(logp[0, 0, 1] + logp[1, 1, 1] + logp[2, 1, 3]))]:
    got = sequence_logprob(logp, tokens)
    assert isinstance(got, float), f"sequence_logprob should return a Python float, got {type(got).__name__}"
    assert abs(got - want) < 1e-9, f"sequence_logprob(logp, {tokens}) = {got:.6f}, expected {want:.6f}"
print("✓ sequence_logprob")
### BEGIN HIDDEN TESTS
logp = random_model(steps=3, vocab=7, seed=11)
for seq, score in exhaustive_search(logp)[:50]:
    assert abs(sequence_logprob(logp, seq) - score) < 1e-9, seq
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · Beam search
#
# Beam search with beam width $k$ keeps the $k$ best **unfinished** sequences ("live") and collects the
# finished ones. Exactly:
#
# 1. Start with one live sequence, the empty one, with score 0.
# 2. At each step $t = 0 \dots T-1$: extend every live sequence by every token, each candidate scored
#    by its **whole** log-probability (the live sequence's score plus `logp[t, last, token]`, with last =
#    EOS for the empty sequence). Keep the $k$ best of all these candidates. Those that end with EOS are
#    finished: move them out. The others are the new live sequences. Stop early when none is live.
# 3. After the last step, the sequences still live have T tokens: they are finished too.
# 4. Return the $k$ best finished sequences, best first, as a list of pairs `(tokens, score)` with `tokens`
#    a list of ints (the EOS included when there is one) and `score` a float.
#
# With $k = 1$ this is greedy decoding; with $k$ at least the number of possible sequences it is
# exhaustive search.
#
# **Task 2.** Write `beam_search(logp, beam)`.

# %% nbgrader={"grade": false, "grade_id": "beam_search", "locked": false, "schema_version": 3, "solution": true, "task": false}
def beam_search(logp, beam):
    """The `beam` best finished sequences under logp (T, V, V), best first: [(tokens, score), ...]."""
    ### BEGIN SOLUTION
    live, finished = [([], 0.0)], []
    for t in range(logp.shape[0]):
        candidates = [(seq + [tok], score + float(logp[t, seq[-1] if seq else EOS, tok]))
                      for seq, score in live for tok in range(logp.shape[1])]
        kept = sorted(candidates, key=lambda item: -item[1])[:beam]
        finished += [c for c in kept if c[0][-1] == EOS]
        live = [c for c in kept if c[0][-1] != EOS]
        if not live:
            break
    return sorted(finished + live, key=lambda item: -item[1])[:beam]
    ### END SOLUTION


# %% [markdown]
# The tests of Task 2: beam 1 is greedy decoding (1 point); the result equals the grader's beam search on
# random models, beam widths and lengths (3 points); a beam as wide as the search space finds exactly what
# exhaustive search finds (2 points).

# %% nbgrader={"grade": true, "grade_id": "test_beam_one", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
def check_result(got, want, what):
    assert isinstance(got, list), f"{what}: beam_search should return a list of (tokens, score), got {type(got).__name__}"
    assert len(got) == len(want), f"{what}: {len(got)} sequences returned, expected {len(want)}"
    for rank, ((seq, score), (want_seq, want_score)) in enumerate(zip(got, want)):
        assert list(seq) == want_seq, f"{what}: sequence {rank} is {list(seq)}, expected {want_seq} (score {want_score:.4f})"
        assert abs(score - want_score) < 1e-9, f"{what}: the score of {want_seq} is {score}, expected {want_score:.6f}"


for seed in range(3):
    logp = random_model(steps=5, vocab=4, seed=seed)
    check_result(beam_search(logp, beam=1), [greedy(logp)], f"beam 1, model {seed}")
print("✓ beam 1 is greedy decoding")
### BEGIN HIDDEN TESTS
for seed in range(20, 24):
    logp = random_model(steps=7, vocab=6, seed=seed, sharpness=1.0)
    check_result(beam_search(logp, beam=1), [greedy(logp)], f"beam 1, hidden model {seed}")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_beam_reference", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# The hidden part compares your search with the grader's, step by step, on models you do not see.
logp = random_model(steps=3, vocab=3, seed=5)
got = beam_search(logp, beam=2)
assert all(tokens[-1] == EOS or len(tokens) == 3 for tokens, _ in got), "every returned sequence must be finished"
assert all(EOS not in tokens[:-1] for tokens, _ in got), "nothing may follow an EOS"
assert [s for _, s in got] == sorted((s for _, s in got), reverse=True), "best first"
for tokens, score in got:
    assert abs(score - score_of(logp, tokens)) < 1e-9, f"the score of {tokens} is not its log-probability"
print("✓ finished sequences, best first, scored by their log-probability")
### BEGIN HIDDEN TESTS
def reference(logp, beam):
    live, finished = [([], 0.0)], []
    for t in range(logp.shape[0]):
        candidates = [(seq + [tok], score + float(logp[t, seq[-1] if seq else EOS, tok]))
                      for seq, score in live for tok in range(logp.shape[1])]
        kept = sorted(candidates, key=lambda item: -item[1])[:beam]
        finished += [c for c in kept if c[0][-1] == EOS]
        live = [c for c in kept if c[0][-1] != EOS]
        if not live:
            break
    return sorted(finished + live, key=lambda item: -item[1])[:beam]


for seed, (steps, vocab, beam, sharp) in enumerate([(5, 4, 2, 2.0), (6, 6, 3, 1.0), (8, 5, 4, 0.5), (4, 8, 2, 1.5)]):
    logp = random_model(steps, vocab, seed=40 + seed, sharpness=sharp)
    check_result(beam_search(logp, beam), reference(logp, beam), f"hidden model {seed}")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_beam_exhaustive", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# A beam as wide as the number of possible sequences is exhaustive search: the same sequences, in order.
logp = random_model(steps=4, vocab=3, seed=1, sharpness=1.0)
everything = exhaustive_search(logp)
check_result(beam_search(logp, beam=len(everything)), everything, "beam as wide as the space")
print(f"✓ a beam of {len(everything)} finds all {len(everything)} sequences, as exhaustive search does")
### BEGIN HIDDEN TESTS
for seed, (steps, vocab) in enumerate([(4, 4), (7, 2), (3, 5)]):
    logp = random_model(steps, vocab, seed=60 + seed, sharpness=1.0)
    everything = exhaustive_search(logp)
    check_result(beam_search(logp, len(everything)), everything, f"hidden model {seed}, full beam")
    check_result(beam_search(logp, 10 ** 4), everything, f"hidden model {seed}, beam wider than the space")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Short sequences win (written answer, 2 points)
#
# Every token multiplies the probability by a number below 1, so the score can only fall as a sequence
# grows. In a few sentences: why does this make beam search (and exhaustive search) favour short
# sequences, why does a *wider* beam often make captions shorter, and what does dividing the final
# score by the length $n^\alpha$ (length normalisation, $0 < \alpha \le 1$) change?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_length", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). The score is a sum of
# negative terms, so a longer sequence pays for every extra token: a short sequence that ends early with a
# probable EOS can beat a longer, better one whose every word is likely. A wider beam explores more
# candidates and so finds more of these early endings, which greedy decoding (committed to one path) never
# considers: search gets better at the objective, and the objective itself favours brevity. Dividing by
# $n^\alpha$ ranks sequences by their (roughly) average log-probability per token instead of the total,
# removing most of the bias towards short outputs ($\alpha = 1$: the mean; smaller $\alpha$: in between).
# One point for the sum of negative terms and the wider-beam effect, one for what normalisation changes.
