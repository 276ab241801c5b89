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
# # Lab 04 · Neural architecture search by regularized evolution
#
# You will write the two moves of regularized (aging) evolution, the searcher of Real et al. (2019): a
# mutation that edits one choice of an architecture, and the step that picks a parent by tournament, adds
# its mutated child and removes the **oldest** member. Then you run your search against random search
# over many seeds. Your code is graded on invariants (a valid child one edit away, a population of
# constant size, the oldest removed) and on beating random search's median when every evaluation is noisy,
# as one training run of a network is.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `mutate`: one edit of a genome | 3 |
# | 2 | `evolution_step`: tournament, child, aging | 2 + 1 |
# | 3 | `evolution_search`: the whole search; against random search | 1 + 3 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# The test cell under your code checks it and says what is wrong. The grader runs those tests and hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not call `Space.mutate` or `karpa_lab.nas.searchers.regularized_evolution`. Use only
# the `rng` you are given for randomness, so that a search is a function of its seed. Before you hand it in:
# *Kernel → Restart Kernel and Run All Cells*. It runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import random
import warnings
from collections import deque

import numpy as np

from karpa_lab.grading import check_aging_step, check_mutation, check_no_calls, tournament_share
from karpa_lab.nas.searchers import SearchTrace, random_search
from karpa_lab.nas.space import Genome, Space, count_params

# MLPs for the 8x8 digits: 1 to 4 hidden layers, 8 widths each, 3 activations: 14,040 genomes.
SPACE = Space(depths=(1, 2, 3, 4), widths=(8, 16, 24, 32, 48, 64, 96, 128), kernels=(0,),
              activations=("relu", "tanh", "gelu"), skips=False)
print(len(SPACE.all_genomes()), "genomes; one of them:", SPACE.sample(random.Random(0)))
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · Mutation
#
# A genome here is an MLP: its hidden widths, e.g. `Genome.mlp(64, 32, activation="tanh")` is
# 64 inputs → 64 → 32 → 10 classes with tanh (its `.key` reads `"64-32:tanh"`). Evolution explores by
# small steps: a mutation (变异) makes **exactly one** edit, chosen at random among those the space allows:
#
# - change the width of one layer to another width of `space.widths`;
# - change the activation to another one of `space.activations`;
# - add a layer (any width of the space, anywhere), if the depth stays in `space.depths`;
# - remove one layer, if the depth stays in `space.depths`.
#
# **Task 1.** Write `mutate(genome, space, rng)` returning the child, a new `Genome.mlp(...)`; `rng` is a
# `random.Random` (use `rng.choice`, `rng.randrange`, ...).

# %% nbgrader={"grade": false, "grade_id": "mutate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mutate(genome, space, rng):
    """A child of genome with exactly one edit: a width, the activation, one layer added or removed."""
    ### BEGIN SOLUTION
    widths, activation = list(genome.widths), genome.activation
    edits = ["width", "activation"]
    if genome.depth + 1 in space.depths:
        edits.append("add")
    if genome.depth - 1 in space.depths:
        edits.append("remove")
    edit = rng.choice(edits)
    if edit == "width":
        i = rng.randrange(len(widths))
        widths[i] = rng.choice([w for w in space.widths if w != widths[i]])
    elif edit == "activation":
        activation = rng.choice([a for a in space.activations if a != activation])
    elif edit == "add":
        widths.insert(rng.randrange(len(widths) + 1), rng.choice(space.widths))
    else:
        del widths[rng.randrange(len(widths))]
    return Genome.mlp(*widths, activation=activation)
    ### END SOLUTION


# %%
rng = random.Random(1)
parent = Genome.mlp(64, 32, activation="tanh")
for _ in range(5):
    child = mutate(parent, SPACE, rng)
    print(f"{parent.key:>16} -> {child.key}")
    parent = child

# %% nbgrader={"grade": true, "grade_id": "test_mutate", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# 200 mutations of random parents: every child valid, inside the space, one edit away; every kind of edit seen.
check_no_calls(mutate, ("mutate", "mutations", "_repair", "karpa_lab"), "write the edit yourself")
check_mutation(mutate, SPACE)
### BEGIN HIDDEN TESTS
check_mutation(mutate, SPACE, trials=400, seed=11)
narrow = Space(depths=(2, 3), widths=(16, 32), kernels=(0,), activations=("relu", "tanh"), skips=False)
check_mutation(mutate, narrow, trials=200, seed=12)
rng = random.Random(13)
deep, shallow = Genome.mlp(8, 8, 8, 8), Genome.mlp(128)
assert all(mutate(deep, SPACE, rng).depth <= 4 for _ in range(100)), "no fifth layer"
assert all(mutate(shallow, SPACE, rng).depth >= 1 for _ in range(100)), "never an empty network"
assert {mutate(deep, SPACE, rng).depth for _ in range(200)} == {3, 4}, "from depth 4: remove a layer or not"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · One step of aging evolution
#
# The population (种群) is a queue of `(genome, score)` pairs, **oldest first** (a `collections.deque`).
# One step:
#
# 1. **Tournament.** Draw `sample_size` members at random, with replacement (`rng.randrange`); the parent
#    is the one with the highest score among them.
# 2. **Child.** `child = mutate_fn(parent, space, rng)`, evaluated once: `score(child)`.
# 3. **Aging.** Append `(child, its score)` at the end and remove the **oldest** member (the first), not
#    the worst: a genome survives only through its children, never through one lucky evaluation.
#
# **Task 2.** Write `evolution_step(population, space, score, rng, sample_size, mutate_fn)`, changing
# `population` in place and returning `(child, child_score)`.

# %% nbgrader={"grade": false, "grade_id": "evolution_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def evolution_step(population, space, score, rng, sample_size, mutate_fn):
    """Tournament of sample_size, mutate the winner, append the child, remove the oldest -> (child, score)."""
    ### BEGIN SOLUTION
    sample = [population[rng.randrange(len(population))] for _ in range(sample_size)]
    parent = max(sample, key=lambda member: member[1])[0]
    child = mutate_fn(parent, space, rng)
    child_score = score(child)
    population.append((child, child_score))
    population.popleft()
    return child, child_score
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_step_invariants", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# The population keeps its size, the oldest leaves, the child joins at the end with its score.
check_aging_step(evolution_step, SPACE)
### BEGIN HIDDEN TESTS
check_aging_step(evolution_step, SPACE, population_size=1, sample_size=1, seed=3)
check_aging_step(evolution_step, SPACE, population_size=20, sample_size=20, seed=4)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_tournament", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The parent wins a tournament: with 5 draws from 10 members it is in the better half about 97 % of the time.
best, top = tournament_share(evolution_step, SPACE, population_size=10, sample_size=5)
print(f"parent is the best member {best:.0%} of the time, in the better half {top:.0%} (expected 41 % and 97 %)")
assert top >= 0.9, "the parent should be the best of the sampled members (max by score)"
### BEGIN HIDDEN TESTS
best, top = tournament_share(evolution_step, SPACE, population_size=10, sample_size=1, seed=5)
assert best <= 0.25 and 0.3 <= top <= 0.7, "with one draw the parent is a uniform pick, not the best member"
best, top = tournament_share(evolution_step, SPACE, population_size=8, sample_size=40, seed=6)
assert best >= 0.95, "with many draws the parent is almost always the best member"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · The search, against random search
#
# The search starts from `population_size` random genomes (`space.sample(rng)`, each evaluated), then
# makes steps until it has spent `budget` evaluations in all, the initial ones included. Record every
# evaluation in a `SearchTrace` (`trace.add(genome, score)`), exactly as `score` returned it, and call
# `score` once per evaluation: `trace.best()` is then the search's answer.
#
# Training a network per evaluation would take minutes, so the search is graded on a stand-in objective
# whose landscape is known (the toy target of lesson 10): about 5,000 parameters, three hidden layers,
# tanh preferred; its best value is about 0.1. As with real training runs, an evaluation is **noisy**:
# `noisy(toy_score, seed)` adds fresh Gaussian noise (standard deviation 0.05) to every call, so the same
# genome scores differently each time. The answer, the genome with the best *noisy* score, is then judged
# by its true toy score: a search is only as good as the architecture it hands back.
#
# **Task 3.** Write `evolution_search(space, score, budget, rng, population_size=10, sample_size=3)`
# returning the `SearchTrace`, with your `evolution_step` and `mutate`.

# %% nbgrader={"grade": false, "grade_id": "evolution_search", "locked": false, "schema_version": 3, "solution": true, "task": false}
def evolution_search(space, score, budget, rng, population_size=10, sample_size=3):
    """Regularized evolution for budget evaluations in all -> SearchTrace of every evaluation, in order."""
    ### BEGIN SOLUTION
    trace = SearchTrace("evolution")
    population = deque()
    while len(population) < population_size and len(trace) < budget:
        genome = space.sample(rng)
        population.append((genome, score(genome)))
        trace.add(*population[-1])
    while len(trace) < budget:
        trace.add(*evolution_step(population, space, score, rng, sample_size, mutate))
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


def answer_quality(search, objective, budget, seed):
    """The true objective of the genome a search returns as its best, every evaluation it made being noisy."""
    evaluate = noisy(objective, seed)
    trace = search(SPACE, evaluate, budget, random.Random(seed))
    made = [(g.key, s) for g, s in zip(trace.genomes, trace.scores)]
    assert made == evaluate.log, "the trace must hold every evaluation, once, in order, with the score it got"
    return objective(trace.best()[0])


def medians(budget, seeds, objective=toy_score):
    """Median true quality of the answers of your search and of random search, over the same seeds and noise."""
    ours = [answer_quality(evolution_search, objective, budget, s) for s in seeds]
    theirs = [answer_quality(random_search, objective, budget, s) for s in seeds]
    return float(np.median(ours)), float(np.median(theirs))


trace = evolution_search(SPACE, noisy(toy_score, 0), 100, random.Random(0))
print("best found:", trace.best()[0].key, "noisy score", round(trace.best()[1], 4), "true score",
      round(toy_score(trace.best()[0]), 4))

# %% nbgrader={"grade": true, "grade_id": "test_search_budget", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Exactly `budget` evaluations, each one call of `score`, every one a valid genome of the space.
check_no_calls(evolution_search, ("regularized_evolution", "karpa_lab"), "use your evolution_step")
for budget in (5, 37):
    evaluate = noisy(toy_score, 2)
    trace = evolution_search(SPACE, evaluate, budget, random.Random(2), population_size=10)
    assert isinstance(trace, SearchTrace) and len(trace) == budget, f"{len(trace)} evaluations for a budget of {budget}"
    assert len(evaluate.log) == budget, f"score was called {len(evaluate.log)} times for a budget of {budget}"
    assert all(SPACE.contains(g) for g in trace.genomes), "every genome inside the space"
print("✓ the budget is respected")
### BEGIN HIDDEN TESTS
evaluate = noisy(toy_score, 3)
trace = evolution_search(SPACE, evaluate, 30, random.Random(3), population_size=30, sample_size=30)
assert len(trace) == 30 and len(evaluate.log) == 30
a = evolution_search(SPACE, noisy(toy_score, 4), 40, random.Random(4))
b = evolution_search(SPACE, noisy(toy_score, 4), 40, random.Random(4))
assert [g.key for g in a.genomes] == [g.key for g in b.genomes], "a search is a function of its rng"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_beats_random", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Over the same 50 seeds, 100 noisy evaluations each, the median true quality of your search's answer beats
# random search's.
ours, theirs = medians(100, range(50))
print(f"median true toy score of the answer over 50 seeds, noisy evaluations: evolution {ours:.4f}, "
      f"random search {theirs:.4f}")
assert ours > theirs, f"your search should beat random search's median here ({ours:.4f} against {theirs:.4f})"
### BEGIN HIDDEN TESTS
def other_target(genome):
    return -abs(math.log(count_params(genome) / 20000)) - 0.05 * abs(genome.depth - 2) + 0.1 * (genome.activation == "relu")


ours, theirs = medians(100, range(1000, 1050), other_target)
assert ours > theirs, "another objective, seeds 1000..1049"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Why the oldest (written answer, 2 points)
#
# Aging evolution removes the oldest member of the population, not the worst. When each evaluation is one
# noisy training run (the validation accuracy of an architecture varies by about a point from seed to seed),
# what goes wrong if the worst is removed instead, and how does aging prevent it? Two to five sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_aging", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). If the worst is removed, an
# architecture that got one lucky evaluation stays in the population forever: its score is never
# re-measured, it keeps winning tournaments, and the search keeps mutating an overestimated parent (and
# the population fills with its relatives). With aging every member dies after `population_size` steps,
# so a genome stays represented only if its children, fresh evaluations of nearby architectures, keep
# scoring well: good architectures are re-sampled through their offspring and lucky noise is forgotten.
# It works as a regularizer towards architectures that are robustly good. Two points: the lucky-evaluation
# problem (1), survival through children and forgetting the noise (1).
