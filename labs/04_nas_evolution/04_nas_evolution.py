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
# # Lab 04 · Neural architecture search by local search
#
# Local search (局部搜索) is the simplest searcher there is, and on many NAS benchmarks one of the strongest
# (White, Nolen & Savani 2021, "Exploring the loss landscape in neural architecture search"): start from a
# random architecture, evaluate its neighbours, the architectures one edit away, in a random order, and move to
# the first one that scores higher; when none does, the search stands on a local optimum and restarts from a
# fresh random architecture. You will write the neighbourhood, the first-improvement move and the search, then
# run it against random search over many seeds. Your code is graded on exact neighbourhoods, on the rules of
# the move (each neighbour at most once, the first better one taken, a local optimum declared only when every
# neighbour has been tried) and on beating random search's median when every evaluation is noisy, as one
# training run of a network is.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `neighbours`: every architecture one edit away | 3 |
# | 2 | `improve`: one first-improvement move | 2 + 1 |
# | 3 | `local_search`: the search with restarts; against random search | 1 + 3 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# The test cell under your code checks it and says what is wrong. The grader runs those tests and hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not call `Space.mutate`, `karpa_lab.nas.searchers.regularized_evolution` or
# `random_search` in your code. Use only the `rng` you are given for randomness, so that a search is a
# function of its seed. Before you hand it in: *Kernel → Restart Kernel and Run All Cells*. It runs in a few
# seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import random
import warnings

import numpy as np

from karpa_lab.grading import (
    check_first_improvement,
    check_local_search,
    check_neighbourhood,
    check_no_calls,
    first_evaluated,
)
from karpa_lab.nas.searchers import SearchTrace, random_search
from karpa_lab.nas.space import Genome, Space, count_params

# MLPs for the 8x8 digits: 1 to 4 hidden layers, 8 widths each, 3 activations: 14,040 genomes.
SPACE = Space(depths=(1, 2, 3, 4), widths=(8, 16, 24, 32, 48, 64, 96, 128), kernels=(0,),
              activations=("relu", "tanh", "gelu"), skips=False)
print(len(SPACE.all_genomes()), "genomes; one of them:", SPACE.sample(random.Random(0)))
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · The neighbourhood
#
# A genome here is an MLP: its hidden widths, e.g. `Genome.mlp(64, 32, activation="tanh")` is
# 64 inputs → 64 → 32 → 10 classes with tanh (its `.key` reads `"64-32:tanh"`). The neighbourhood (邻域)
# $N(g)$ of a genome $g$ with widths $(w_1, \dots, w_L)$ and activation $a$ is every genome of the space that
# **exactly one edit** turns $g$ into:
#
# - change the width of one layer $i$ to another width of `space.widths`: $L \cdot (|W| - 1)$ genomes;
# - change the activation to another one of `space.activations`: $|A| - 1$ genomes;
# - add one layer of any width $w \in$ `space.widths` at any position $0, \dots, L$ (before the first
#   layer, between two, or after the last), if $L + 1$ is in `space.depths`;
# - remove any one layer, if $L - 1$ is in `space.depths`.
#
# Adding or removing a layer can give the same genome in two ways: removing either layer of `16-16` gives
# `16`, and adding a 16 before or after the 16 of `16` gives `16-16`. A neighbourhood is a set: list each
# genome **once**. For `16-32:relu` in the space above that makes 14 width changes, 2 activation changes,
# 22 distinct ways to add a layer (3 positions x 8 widths, less the 2 repeats) and 2 removals: 40 neighbours.
#
# **Task 1.** Write `neighbours(genome, space)` returning the list of the neighbours (`Genome.mlp(...)`),
# each once, in any order.

# %% nbgrader={"grade": false, "grade_id": "neighbours", "locked": false, "schema_version": 3, "solution": true, "task": false}
def neighbours(genome, space):
    """Every genome of space one edit from genome (a width, the activation, a layer added or removed), once each."""
    ### BEGIN SOLUTION
    widths, activation = list(genome.widths), genome.activation
    found = {}
    for i, old in enumerate(widths):
        for w in space.widths:
            if w != old:
                found.setdefault((*widths[:i], w, *widths[i + 1:], activation))
    for a in space.activations:
        if a != activation:
            found.setdefault((*widths, a))
    if len(widths) + 1 in space.depths:
        for i in range(len(widths) + 1):
            for w in space.widths:
                found.setdefault((*widths[:i], w, *widths[i:], activation))
    if len(widths) - 1 in space.depths:
        for i in range(len(widths)):
            found.setdefault((*widths[:i], *widths[i + 1:], activation))
    return [Genome.mlp(*key[:-1], activation=key[-1]) for key in found]
    ### END SOLUTION


# %%
for g in (Genome.mlp(16, 32), Genome.mlp(16, 16, activation="tanh"), Genome.mlp(8, 8, 8, 8)):
    print(f"{g.key:>12}: {len(neighbours(g, SPACE))} neighbours, e.g. {[n.key for n in neighbours(g, SPACE)[-3:]]}")

# %% nbgrader={"grade": true, "grade_id": "test_neighbours", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Worked examples in a small space, then 100 random genomes: distinct genomes of the space, one edit away.
small = Space(depths=(1, 2), widths=(16, 32), kernels=(0,), activations=("relu", "tanh"), skips=False)
check_no_calls(neighbours, ("mutate", "mutations", "_repair", "karpa_lab"), "write the edits yourself")
for genome, expected in ((Genome.mlp(16), {"32:relu", "16:tanh", "16-16:relu", "32-16:relu", "16-32:relu"}),
                         (Genome.mlp(16, 32), {"32-32:relu", "16-16:relu", "16-32:tanh", "32:relu", "16:relu"})):
    got = [g.key for g in neighbours(genome, small)]
    assert sorted(got) == sorted(expected), (
        f"neighbours({genome.key}) in a space of depths 1-2, widths 16 and 32, relu and tanh should be "
        f"{sorted(expected)}; missing {sorted(expected - set(got))}, not neighbours or repeated "
        f"{sorted(k for k in got if k not in expected or got.count(k) > 1)}")
check_neighbourhood(neighbours, SPACE)
### BEGIN HIDDEN TESTS
def one_edit(a, b):
    """Whether b is a with exactly one width changed, the activation changed, or one layer inserted/deleted."""
    if a.depth == b.depth:
        return sum(x != y for x, y in zip(a.widths, b.widths)) + (a.activation != b.activation) == 1
    if a.activation != b.activation or abs(a.depth - b.depth) != 1:
        return False
    short, long_ = (a.widths, b.widths) if a.depth < b.depth else (b.widths, a.widths)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def reference_neighbours(genome, space):
    return {g.key for g in space.all_genomes() if abs(g.depth - genome.depth) <= 1 and one_edit(genome, g)}


gapped = Space(depths=(1, 3, 4), widths=(8, 16, 24), kernels=(0,), activations=("relu", "tanh", "gelu"), skips=False)
for space, n, seed in ((SPACE, 60, 21), (small, 20, 22), (gapped, 40, 23)):
    rng = random.Random(seed)
    for genome in [space.sample(rng) for _ in range(n)] + [Genome.mlp(*space.widths[:1] * max(space.depths))]:
        got = [g.key for g in neighbours(genome, space)]
        want = reference_neighbours(genome, space)
        assert len(got) == len(set(got)) and set(got) == want, (genome.key, sorted(set(got) ^ want)[:6])
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · One move: first improvement
#
# The search holds a current genome $g$ and the score $s$ it got when it was evaluated, once. One move
# evaluates the neighbours of $g$ **in a random order** (shuffle a copy of `neighbours(genome, space)` with
# `rng.shuffle`), each at most once and at most `budget` of them, and stops at the **first** neighbour $n$
# with $\text{score}(n) > s$, strictly higher. It returns `(evaluated, better)`: `evaluated` lists every
# `(neighbour, its score)` in the order they were evaluated, and `better` is `(n, score(n))` (the last pair
# of `evaluated`), or `None` if no neighbour scored higher: then $g$ is a local optimum (局部最优), unless the
# budget ran out first. White et al. call this *first improvement*; the alternative, evaluating the whole
# neighbourhood and taking the best, spends a full neighbourhood on every step.
#
# **Task 2.** Write `improve(genome, genome_score, space, score, rng, budget)`.

# %% nbgrader={"grade": false, "grade_id": "improve", "locked": false, "schema_version": 3, "solution": true, "task": false}
def improve(genome, genome_score, space, score, rng, budget):
    """First improvement over at most budget neighbours, in a random order -> (evaluated pairs, better pair or None)."""
    ### BEGIN SOLUTION
    order = neighbours(genome, space)
    rng.shuffle(order)
    evaluated = []
    for neighbour in order[:budget]:
        value = score(neighbour)
        evaluated.append((neighbour, value))
        if value > genome_score:
            return evaluated, (neighbour, value)
    return evaluated, None
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_improve_rules", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Every neighbour at most once, all returned in order; the first strictly better one taken; the budget kept.
check_first_improvement(improve, SPACE, neighbours)
### BEGIN HIDDEN TESTS
gapped = Space(depths=(1, 3, 4), widths=(8, 16, 24), kernels=(0,), activations=("relu", "tanh", "gelu"), skips=False)
check_first_improvement(improve, small, neighbours, trials=10, seed=31)
check_first_improvement(improve, gapped, neighbours, trials=20, seed=32)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_improve_order", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The order is random: over 300 moves from 16-32:relu, each of its 40 neighbours comes first about 7.5 times.
pairs = first_evaluated(improve, SPACE, Genome.mlp(16, 32))
firsts = [evaluated[0].key for evaluated in pairs]
top = max(firsts.count(k) for k in firsts)
print(f"{len(set(firsts))} different neighbours evaluated first in 300 moves, the most frequent {top} times "
      "(expected: about 40, at most about 16)")
assert len(set(firsts)) >= 30 and top <= 25, "shuffle the neighbours (rng.shuffle) before evaluating them"
### BEGIN HIDDEN TESTS
listed = [g.key for g in neighbours(Genome.mlp(16, 32), SPACE)]
after = sum(listed.index(second.key) == (listed.index(first.key) + 1) % len(listed) for first, second in pairs)
assert after <= 30, "the whole order is random, not only where it starts"
again = first_evaluated(improve, SPACE, Genome.mlp(16, 32))
assert again == pairs, "the order is a function of the rng"
deep = [evaluated[0].key for evaluated in first_evaluated(improve, SPACE, Genome.mlp(8, 8, 8, 8), seed=33)]
assert len(set(deep)) >= 15 and max(deep.count(k) for k in deep) <= 40
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · The search, against random search
#
# Local search with restarts, for `budget` evaluations in all:
#
# 1. draw a genome with `space.sample(rng)`, evaluate it once and record it: it is the current genome;
# 2. `improve` it with the budget that is left, and add what it evaluated to the trace; while a move returns a
#    better neighbour, that neighbour (and the score it got) becomes the current genome: it is **never evaluated
#    again**;
# 3. when a move returns `None` before the budget is spent, the current genome is a local optimum: restart at 1.
#
# Record every evaluation in one `SearchTrace` (`trace.add(genome, score)`), exactly as `score` returned it,
# and call `score` once per evaluation: `trace.best()` is then the search's answer.
#
# Training a network per evaluation would take minutes, so the search is graded on a stand-in objective
# whose landscape is known (the toy target of lesson 10): about 5,000 parameters, three hidden layers,
# tanh preferred; its best value is about 0.1. As with real training runs, an evaluation is **noisy**:
# `noisy(toy_score, seed)` adds fresh Gaussian noise (standard deviation 0.05) to every call, so the same
# genome scores differently each time. The answer, the genome with the best *noisy* score, is then judged
# by its true toy score: a search is only as good as the architecture it hands back.
#
# **Task 3.** Write `local_search(space, score, budget, rng)` returning the `SearchTrace`, with your `improve`.

# %% nbgrader={"grade": false, "grade_id": "local_search", "locked": false, "schema_version": 3, "solution": true, "task": false}
def local_search(space, score, budget, rng):
    """Local search, first improvement, random restarts; budget evaluations in all -> SearchTrace of them, in order."""
    ### BEGIN SOLUTION
    trace = SearchTrace("local search")
    while len(trace) < budget:
        genome = space.sample(rng)
        value = score(genome)
        trace.add(genome, value)
        while len(trace) < budget:
            evaluated, better = improve(genome, value, space, score, rng, budget - len(trace))
            for pair in evaluated:
                trace.add(*pair)
            if better is None:
                break
            genome, value = better
    return trace
    ### END SOLUTION


# %%
def toy_score(genome):
    """The stand-in objective: near 5,000 parameters, three layers, tanh; at most about 0.1."""
    return -abs(math.log(count_params(genome) / 5000)) - 0.05 * abs(genome.depth - 3) + 0.1 * (genome.activation == "tanh")


def noisy(objective, seed, sigma=0.05):
    """objective(genome) plus fresh N(0, sigma^2) noise at every call; ``.log`` lists every (genome key, score)."""
    rng = random.Random(seed)

    def evaluate(genome):
        value = objective(genome) + rng.gauss(0.0, sigma)
        evaluate.log.append((genome.key, value))
        return value

    evaluate.log = []
    return evaluate


def answer_quality(search, objective, budget, seed, rules=False):
    """The true objective of the genome a search returns as its best, every evaluation it made being noisy;
    with ``rules`` its trace is replayed under the rules of local search first."""
    evaluate = noisy(objective, seed)
    trace = search(SPACE, evaluate, budget, random.Random(seed))
    made = [(g.key, s) for g, s in zip(trace.genomes, trace.scores)]
    assert made == evaluate.log, "the trace must hold every evaluation, once, in order, with the score it got"
    if rules:
        check_local_search(trace, SPACE, neighbours)
    return objective(trace.best()[0])


def medians(budget, seeds, objective=toy_score):
    """Median true quality of the answers of your search and of random search, over the same seeds and noise."""
    ours = [answer_quality(local_search, objective, budget, s, rules=True) for s in seeds]
    theirs = [answer_quality(random_search, objective, budget, s) for s in seeds]
    return float(np.median(ours)), float(np.median(theirs))


trace = local_search(SPACE, noisy(toy_score, 0), 100, random.Random(0))
moves, restarts = check_local_search(trace, SPACE, neighbours)
print(f"{moves} moves and {restarts} restarts in 100 evaluations; best found: {trace.best()[0].key}, noisy score "
      f"{trace.best()[1]:.4f}, true score {toy_score(trace.best()[0]):.4f}")

# %% nbgrader={"grade": true, "grade_id": "test_search_budget", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exactly `budget` evaluations, each one call of `score`, every one a valid genome; the rules of local search kept.
check_no_calls(local_search, ("regularized_evolution", "random_search", "karpa_lab"), "use your improve")
for budget in (5, 37, 100):
    evaluate = noisy(toy_score, 2)
    trace = local_search(SPACE, evaluate, budget, random.Random(2))
    assert isinstance(trace, SearchTrace) and len(trace) == budget, f"{len(trace)} evaluations for a budget of {budget}"
    assert len(evaluate.log) == budget, f"score was called {len(evaluate.log)} times for a budget of {budget}"
    assert all(SPACE.contains(g) for g in trace.genomes), "every genome inside the space"
    check_local_search(trace, SPACE, neighbours)
trace = local_search(small, noisy(toy_score, 2), 60, random.Random(2))
moves, restarts = check_local_search(trace, small, neighbours)
assert len(trace) == 60 and restarts >= 2, f"{restarts} restarts in a space of 20 genomes: restart at a local optimum"
print("✓ the budget is respected and the moves follow the rules")
### BEGIN HIDDEN TESTS
gapped = Space(depths=(1, 3, 4), widths=(8, 16, 24), kernels=(0,), activations=("relu", "tanh", "gelu"), skips=False)
for space, seed in ((gapped, 3), (small, 4)):
    evaluate = noisy(toy_score, seed)
    trace = local_search(space, evaluate, 80, random.Random(seed))
    assert len(trace) == 80 and len(evaluate.log) == 80
    check_local_search(trace, space, neighbours)
a = local_search(SPACE, noisy(toy_score, 4), 60, random.Random(4))
b = local_search(SPACE, noisy(toy_score, 4), 60, random.Random(4))
assert [g.key for g in a.genomes] == [g.key for g in b.genomes], "a search is a function of its rng"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_beats_random", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Over the same 100 seeds, 100 noisy evaluations each, every search kept to the rules, the median true quality of
# your search's answer beats random search's.
ours, theirs = medians(100, range(100))
print(f"median true toy score of the answer over 100 seeds, noisy evaluations: local search {ours:.4f}, "
      f"random search {theirs:.4f}")
assert ours > theirs, f"your search should beat random search's median here ({ours:.4f} against {theirs:.4f})"
### BEGIN HIDDEN TESTS
def other_target(genome):
    return -abs(math.log(count_params(genome) / 10000)) - 0.05 * abs(genome.depth - 4) + 0.1 * (genome.activation == "relu")


ours, theirs = medians(100, range(1000, 1100), other_target)
assert ours > theirs, "another objective, seeds 1000..1099"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · A lucky evaluation (written answer, 2 points)
#
# Your local search evaluates each genome once and keeps the score it got: the current genome is never
# re-measured. When each evaluation is one noisy training run (the validation accuracy of an architecture
# varies by about a point from seed to seed), what does one lucky evaluation of the current genome do to the
# search, and what does it cost in evaluations? Name one change that would protect the search against it.
# Two to five sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_noise", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). A genome that got a lucky
# evaluation keeps its inflated score as the bar to beat: neighbours that are truly as good or slightly
# better must also be lucky to pass it, so the search stalls there, and it declares a false local optimum only
# after spending its whole neighbourhood on it (the sizes printed in Part 1, a large share of the budget);
# a lucky but truly worse neighbour can also be accepted and then block the walk in the same way. The
# answer the search hands back is then often that over-estimated genome. Protections: re-measure the
# current genome (average a few evaluations) before comparing, or ask a neighbour to beat it by a margin of
# about the noise; aging evolution does something similar by letting every member die, so no single lucky
# score lasts. Two points: the stalled search with its wasted neighbourhood (1), a sound remedy (1).
