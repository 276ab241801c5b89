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
# # Lab 06 · Beam search with a length penalty
#
# A captioning model or a language model gives, at each step, a probability for every next word; a
# caption is the sequence you pick from them. Exhaustive search finds the most probable sequence but costs
# $V^T$ evaluations; beam search keeps the $k$ best partial sequences at every step. Ranked by probability,
# though, the winner is often a very short sequence: each word multiplies the probability by a number below
# 1. Google's neural machine translation system (Wu et al. 2016, "Google's neural machine translation system:
# bridging the gap between human and machine translation") divides the log-probability by a length penalty
# and keeps the finished sequences aside, so the beam stays full of live ones. You will write that score and
# that search over a small language model given as a table; your search is graded against exhaustive search
# and against the grader's own search on models and penalties you do not see.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `sequence_score`: the length-penalised score of a sequence | 2 |
# | 2 | `beam_search` with the penalty, finished sequences kept aside | 1 + 3 + 2 |
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


def finished_sequences(logp: torch.Tensor):
    """Every finished sequence: ended by EOS, or T tokens long, nothing after an EOS."""
    steps, vocab = logp.shape[0], logp.shape[1]
    for length in range(1, steps + 1):
        for seq in itertools.product(range(vocab), repeat=length):
            if EOS not in seq[:-1] and (length == steps or seq[-1] == EOS):
                yield list(seq)


# %% [markdown]
# ## The model and the score
#
# The vocabulary is $\{0, 1, \dots, V-1\}$ and token 0 is EOS (end of sequence). The model is a table
# `logp` (T, V, V): `logp[t, a, b]` $= \log P(x_{t+1} = b \mid x_t = a)$ at step t (counted from 0), and
# a sequence starts from the context $x_0 = $ EOS. A sequence $Y = x_1 \dots x_n$ is **finished** when it
# ends with EOS or has T tokens; nothing follows an EOS. Its log-probability is
#
# $$\log P(Y) = \sum_{t=1}^{n} \text{logp}[t-1,\, x_{t-1},\, x_t] \qquad (x_0 = \text{EOS}),$$
#
# and its score, with GNMT's length penalty and a strength $\alpha \ge 0$, is
#
# $$s(Y) = \frac{\log P(Y)}{\text{lp}(Y)}, \qquad \text{lp}(Y) = \left(\frac{5 + |Y|}{6}\right)^{\alpha},$$
#
# with $|Y| = n$ the number of tokens, the EOS included. $\alpha = 0$ gives the plain log-probability; a
# larger $\alpha$ divides long sequences' (negative) log-probabilities by more, so they lose less for their
# length. Ranked by log-probability alone, the best finished sequence of this model is the empty sentence
# (EOS at once); with $\alpha = 1$ it is a five-token sequence (run the cell):

# %%
def penalised(logp, seq, alpha):
    return score_of(logp, seq) / ((5 + len(seq)) / 6) ** alpha


logp = random_model(steps=5, vocab=4, seed=19, sharpness=1.0)
for alpha in (0.0, 1.0):
    best = max(finished_sequences(logp), key=lambda seq: penalised(logp, seq, alpha))
    print(f"alpha {alpha}: best {best}, log P = {score_of(logp, best):.4f}, score {penalised(logp, best, alpha):.4f}")
assert max(finished_sequences(logp), key=lambda seq: score_of(logp, seq)) == [EOS], "the empty sentence wins"

# %% [markdown]
# ## Part 1 · The score of a sequence
#
# **Task 1.** Write `sequence_score(logp, tokens, alpha)`: the score $s(Y)$ (a Python float) of the list
# `tokens` $= [x_1, \dots, x_n]$, starting from the context EOS, by the formulas above. Add the log-probability
# terms one step at a time, in order, then divide by the penalty (then your scores equal the grader's to the
# last digits).

# %% nbgrader={"grade": false, "grade_id": "sequence_score", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sequence_score(logp, tokens, alpha):
    """log P(tokens) / ((5 + len(tokens)) / 6) ** alpha under the table logp (T, V, V), from the context EOS."""
    ### BEGIN SOLUTION
    score, last = 0.0, EOS
    for t, token in enumerate(tokens):
        score += float(logp[t, last, token])
        last = token
    return score / ((5 + len(tokens)) / 6) ** alpha
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_score", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
logp = random_model(steps=3, vocab=5, seed=0)
for tokens, alpha, want in [([2, 0], 1.0, float(logp[0, 0, 2] + logp[1, 2, 0]) / (7 / 6)),
                            ([1, 1, 3], 0.6, float(logp[0, 0, 1] + logp[1, 1, 1] + logp[2, 1, 3]) / (8 / 6) ** 0.6),
                            ([0], 0.0, float(logp[0, 0, 0])), ([2, 0], 0.0, float(logp[0, 0, 2] + logp[1, 2, 0]))]:
    got = sequence_score(logp, tokens, alpha)
    assert isinstance(got, float), f"sequence_score should return a Python float, got {type(got).__name__}"
    assert abs(got - want) < 1e-9, f"sequence_score(logp, {tokens}, alpha={alpha}) = {got:.6f}, expected {want:.6f}"
print("✓ sequence_score")
### BEGIN HIDDEN TESTS
logp = random_model(steps=3, vocab=7, seed=11)
for alpha in (0.0, 0.3, 1.0, 2.5):
    for seq in list(finished_sequences(logp))[::7]:
        want = score_of(logp, seq) / ((5 + len(seq)) / 6) ** alpha
        assert abs(sequence_score(logp, seq, alpha) - want) < 1e-9, (seq, alpha)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · Beam search, finished sequences kept aside
#
# Beam search with beam width $k$ keeps the $k$ best **unfinished** sequences ("live") and puts every
# sequence that finishes aside. Exactly:
#
# 1. Start with one live sequence, the empty one, with log-probability 0.
# 2. At each step $t = 0 \dots T-1$: extend every live sequence by every token, each candidate carrying its
#    **whole** log-probability (the live sequence's plus `logp[t, last, token]`, with last = EOS for the
#    empty sequence). Every candidate that ends with EOS is finished: put it aside. The $k$ best of the
#    others (by log-probability) are the new live sequences.
# 3. After the last step, the sequences still live have T tokens: they are finished too.
# 4. Return the $k$ best finished sequences by their score $s(Y)$, best first, as a list of pairs
#    `(tokens, score)` with `tokens` a list of ints (the EOS included when there is one) and `score` the
#    float $s(Y)$.
#
# All the live sequences of a step have the same length, so ranking them by log-probability or by score is
# the same; the penalty decides between finished sequences of different lengths. Because a finished sequence
# never takes a live one's place, even $k = 1$ considers ending at every step. With $k$ at least the number of
# possible sequences the search is exhaustive.
#
# **Task 2.** Write `beam_search(logp, beam, alpha)`.

# %% nbgrader={"grade": false, "grade_id": "beam_search", "locked": false, "schema_version": 3, "solution": true, "task": false}
def beam_search(logp, beam, alpha):
    """The `beam` best finished sequences under logp (T, V, V) by their score, best first: [(tokens, score), ...]."""
    ### BEGIN SOLUTION
    def finish(seq, logprob):
        return seq, logprob / ((5 + len(seq)) / 6) ** alpha

    live, finished = [([], 0.0)], []
    for t in range(logp.shape[0]):
        candidates = [(seq + [tok], score + float(logp[t, seq[-1] if seq else EOS, tok]))
                      for seq, score in live for tok in range(logp.shape[1])]
        finished += [finish(*c) for c in candidates if c[0][-1] == EOS]
        live = sorted((c for c in candidates if c[0][-1] != EOS), key=lambda item: -item[1])[:beam]
    finished += [finish(*c) for c in live]
    return sorted(finished, key=lambda item: -item[1])[:beam]
    ### END SOLUTION


# %% [markdown]
# The tests of Task 2: a beam of one follows one path and may end it at any step (1 point); the result equals
# the grader's beam search on random models, beam widths, lengths and penalties (3 points); a beam as wide as
# the search space finds exactly what exhaustive search finds (2 points).

# %% nbgrader={"grade": true, "grade_id": "test_beam_one", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
def check_result(got, want, what):
    assert isinstance(got, list), f"{what}: beam_search should return a list of (tokens, score), got {type(got).__name__}"
    assert len(got) == len(want), f"{what}: {len(got)} sequences returned, expected {len(want)}"
    for rank, ((seq, score), (want_seq, want_score)) in enumerate(zip(got, want)):
        assert list(seq) == want_seq, f"{what}: sequence {rank} is {list(seq)}, expected {want_seq} (score {want_score:.4f})"
        assert abs(score - want_score) < 1e-9, f"{what}: the score of {want_seq} is {score}, expected {want_score:.6f}"


def one_path(logp, alpha):
    """A beam of one by hand: the live sequence takes its best token other than EOS at every step, and ending
    it with EOS at any step (or reaching T tokens) is a finished candidate. The best of those, by score."""
    path, ends = [], []
    for t in range(logp.shape[0]):
        ends.append(path + [EOS])
        row = logp[t, path[-1] if path else EOS].clone()
        row[EOS] = float("-inf")
        path = path + [int(row.argmax())]
    best = max(ends + [path], key=lambda seq: penalised(logp, seq, alpha))
    return [(best, penalised(logp, best, alpha))]


for seed in range(3):
    logp = random_model(steps=5, vocab=4, seed=seed)
    check_result(beam_search(logp, 1, 0.8), one_path(logp, 0.8), f"beam 1, alpha 0.8, model {seed}")
print("✓ a beam of one ends its path where the score is best")
### BEGIN HIDDEN TESTS
for seed, alpha in zip(range(20, 24), (0.0, 0.5, 1.0, 3.0)):
    logp = random_model(steps=7, vocab=6, seed=seed, sharpness=1.0)
    check_result(beam_search(logp, 1, alpha), one_path(logp, alpha), f"beam 1, hidden model {seed}")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_beam_reference", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# The hidden part compares your search with the grader's, step by step, on models you do not see.
logp = random_model(steps=4, vocab=3, seed=5)
got = beam_search(logp, 2, 0.6)
assert len(got) == 2, f"beam 2 should return the 2 best finished sequences, got {len(got)}"
assert all(tokens[-1] == EOS or len(tokens) == 4 for tokens, _ in got), "every returned sequence must be finished"
assert all(EOS not in tokens[:-1] for tokens, _ in got), "nothing may follow an EOS"
assert [s for _, s in got] == sorted((s for _, s in got), reverse=True), "best first"
for tokens, score in got:
    assert abs(score - penalised(logp, tokens, 0.6)) < 1e-9, f"the score of {tokens} is not log P(Y) / lp(Y)"
print("✓ finished sequences, best first, scored by log P(Y) / lp(Y)")
### BEGIN HIDDEN TESTS
def reference(logp, beam, alpha):
    steps, vocab = logp.shape[:2]
    live, done = [((), 0.0)], []
    for t in range(steps):
        grown = []
        for seq, score in live:
            for tok in range(vocab):
                extended = (seq + (tok,), score + float(logp[t, seq[-1] if seq else EOS, tok]))
                (done if tok == EOS else grown).append(extended)
        live = sorted(grown, key=lambda item: -item[1])[:beam]
    ranked = sorted(((list(s), lp / ((5 + len(s)) / 6) ** alpha) for s, lp in done + live), key=lambda i: -i[1])
    return ranked[:beam]


for seed, (steps, vocab, beam, sharp, alpha) in enumerate([(5, 4, 2, 2.0, 0.0), (6, 6, 3, 1.0, 0.6),
                                                           (8, 5, 4, 0.5, 1.0), (4, 8, 2, 1.5, 2.0),
                                                           (7, 3, 5, 1.0, 0.3)]):
    logp = random_model(steps, vocab, seed=40 + seed, sharpness=sharp)
    check_result(beam_search(logp, beam, alpha), reference(logp, beam, alpha), f"hidden model {seed}")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_beam_exhaustive", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# A beam as wide as the number of possible sequences is exhaustive search: the same sequences, in order.
def exhaustive_search(logp, alpha):
    scored = [(seq, penalised(logp, seq, alpha)) for seq in finished_sequences(logp)]
    return sorted(scored, key=lambda item: -item[1])


logp = random_model(steps=4, vocab=3, seed=1, sharpness=1.0)
for alpha in (0.0, 0.6):
    everything = exhaustive_search(logp, alpha)
    check_result(beam_search(logp, len(everything), alpha), everything, f"beam as wide as the space, alpha {alpha}")
print(f"✓ a beam of {len(everything)} finds all {len(everything)} sequences, as exhaustive search does")
### BEGIN HIDDEN TESTS
for seed, (steps, vocab, alpha) in enumerate([(4, 4, 1.0), (7, 2, 0.2), (3, 5, 2.0)]):
    logp = random_model(steps, vocab, seed=60 + seed, sharpness=1.0)
    everything = exhaustive_search(logp, alpha)
    check_result(beam_search(logp, len(everything), alpha), everything, f"hidden model {seed}, full beam")
    check_result(beam_search(logp, 10 ** 4, alpha), everything, f"hidden model {seed}, beam wider than the space")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Short sequences win (written answer, 2 points)
#
# Every token multiplies the probability by a number below 1, so the log-probability can only fall as a
# sequence grows. In a few sentences: why does ranking finished sequences by $\log P(Y)$ alone favour short
# ones, and why does a *wider* beam often make the outputs shorter? What does dividing by
# $\text{lp}(Y) = ((5 + |Y|)/6)^\alpha$ change, at $\alpha = 0$ and as $\alpha$ grows, and what does the 5 do
# for the shortest sequences, compared with dividing by $|Y|^\alpha$?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_length", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). The log-probability is a sum of
# negative terms, so a longer sequence pays for every extra token: a short sequence that ends early with a
# probable EOS can beat a longer one whose every word is likely. A wider beam explores more candidates and so
# finds more of these early endings: search gets better at the objective, and the objective itself favours
# brevity. Dividing by lp leaves the ranking unchanged at $\alpha = 0$; a larger $\alpha$ divides the negative
# log-probability of a long sequence by more, so length costs less, and around $\alpha = 1$ the score is close
# to the average log-probability per token (times a constant) for long sequences. The 5 keeps the penalty
# gentle for short ones: lp grows from 1 at $|Y| = 1$ to $(7/6)^\alpha$ at $|Y| = 2$, where $|Y|^\alpha$ would
# already double (at $\alpha = 1$), so one- and two-token outputs are not thrown up or down by the division
# alone. One point for the sum of negative terms and the wider-beam effect, one for what the penalty and its 5
# change.
