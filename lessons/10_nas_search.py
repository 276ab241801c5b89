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
# # Lesson 10 — Neural architecture search by search: space, protocol, random search, evolution, Pareto front
#
# **The question.** Every network so far was designed by hand: "two hidden layers of 128, ReLU" because it
# looked reasonable. Can a program choose the depth, the widths, the activation and the skip connections
# instead, and — the harder part — how would we *know* that what it found is better, and not just lucky?
#
# That program is **neural architecture search** (神经架构搜索, NAS). Every NAS method has three parts
# (Elsken, Metzen & Hutter 2019): a **search space** (搜索空间) of architectures, a **search strategy**
# (搜索策略) that proposes the next one, and a **performance estimation** (性能评估) that says how good a
# proposal is. At the end of this lesson you can
#
# - describe a space of networks by a compact **genome** (基因组编码), build the network, count its parameters and FLOPs;
# - evaluate candidates under a **fair protocol**: same budget, same seeds, validation for the search, test once;
# - write **random search** (随机搜索) and **regularized evolution** (正则化进化, Real et al. 2019) and compare them
#   honestly over many repeats on a **tabular benchmark** (表格基准) generated here, the way NAS-Bench-101/201 are used;
# - see the **noise** of a single training run and how a search **overfits the validation split**;
# - read the **Pareto front** (帕累托前沿) of accuracy against size, with the hand-designed baseline placed on it.

# %%
import random
import time
from collections import deque

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from karpa_lab import by_scale, describe
from karpa_lab.nas.pareto import at_least_as_good, draw_front
from karpa_lab.nas.protocol import Protocol
from karpa_lab.nas.searchers import random_search, regularized_evolution
from karpa_lab.nas.space import Genome, Space, build_model, count_flops, count_params
from karpa_lab.nas.tabular import BENCH_BUDGET, BENCH_SPACE, DEFAULT_PATH, TabularBenchmark, repeat_search
from karpa_lab.widgets.nas_live import SearchMonitor
from karpa_lab.widgets.nas_playground import compare, draw_compare, search_playground

print(describe())

# %% [markdown]
# ## 1. The math
#
# **Search is a bilevel problem.** For an architecture $a$ from the space $\mathcal{A}$, training finds weights
# $w^*(a)$; the search wants the architecture whose trained weights do best on held-out data:
#
# $$a^* = \arg\max_{a \in \mathcal{A}} \; \mathrm{Acc}_{\text{val}}\big(w^*(a), a\big), \qquad
#   w^*(a) = \arg\min_{w} \; \mathcal{L}_{\text{train}}(w, a).$$
#
# The inner $\arg\min$ is a whole training run, so we only ever have an *estimate* of it: a fixed budget of
# $T$ optimizer steps with one seed. Two consequences drive the lesson: every evaluation is expensive, and every
# evaluation is noisy.
#
# **Cost of a candidate.** For one image, a dense layer with input $h \in \mathbb{R}^{d_{in}}$ and output
# $\mathbb{R}^{d_{out}}$ has a weight $W$ $(d_{out}, d_{in})$ and a bias $(d_{out},)$; a $k \times k$ convolution
# from $C_{in}$ to $C_{out}$ channels on an $H \times W$ map ('same' padding) has a kernel $(C_{out}, C_{in}, k, k)$:
#
# $$\text{params}_{\text{dense}} = d_{in} d_{out} + d_{out}, \qquad \text{FLOPs}_{\text{dense}} = 2\, d_{in} d_{out},$$
# $$\text{params}_{\text{conv}} = k^2 C_{in} C_{out} + C_{out}, \qquad \text{FLOPs}_{\text{conv}} = 2\, k^2 C_{in} C_{out} H W,$$
#
# counting a multiply-add as 2 FLOPs (PyTorch's `FlopCounterMode` does the same; many papers count multiply-adds
# and still call them FLOPs — always say which).
#
# **Regularized evolution** (Real et al. 2019, Algorithm 1) keeps a population of $P$ evaluated genomes in a queue.
# Each cycle samples $S$ members at random, mutates the best of that sample (a **tournament**, tournament selection, 锦标赛选择), evaluates
# the child, appends it and removes the **oldest** member — not the worst. Aging means a genome survives only by
# having good children, so one lucky evaluation cannot dominate the population forever.
#
# **Best-so-far and regret.** A search that evaluated $g_1, \dots, g_t$ with scores $s_1, \dots, s_t$ has the
# best-so-far curve $b_t = \max_{i \le t} s_i$; it returns $\hat a = g_{\arg\max_i s_i}$. Its **test regret**
# (测试遗憾) is $\max_{a \in \mathcal{A}} \mathrm{Acc}_{\text{test}}(a) - \mathrm{Acc}_{\text{test}}(\hat a)$:
# what we lost against the best architecture of the space, measured on data the search never saw.
#
# **Pareto dominance.** With two objectives (accuracy up, parameters down), $a$ dominates $b$ when
# $\text{params}_a \le \text{params}_b$ and $\text{acc}_a \ge \text{acc}_b$, one of them strictly. The
# non-dominated candidates form the Pareto front: for every size, the most accurate network of at most that size.

# %% [markdown]
# ## 2. From scratch: a genome, its network and its cost
#
# A genome lists the hidden layers: a width per layer, a kernel per layer (0 for a dense layer, an odd $k$ for a
# $k \times k$ convolution), a skip bit per layer (a residual $h + f(h)$, allowed only where input and output have
# the same shape), and one activation. Its short name reads left to right: `c16k3-c16k3+-64:relu` is two 3×3
# convolutions of 16 channels (the second with a skip), then a dense layer of 64 units.
#
# First the cost of a plain MLP, from the formulas above, in three lines:

# %%
def mlp_cost(widths, n_in=64, n_out=10):
    """Parameters and FLOPs per image of an MLP n_in -> widths... -> n_out."""
    dims = [n_in, *widths, n_out]
    params = sum(a * b + b for a, b in zip(dims, dims[1:]))
    flops = sum(2 * a * b for a, b in zip(dims, dims[1:]))
    return params, flops


baseline = Genome.mlp(128, 128)  # the hand-designed baseline: two hidden layers of 128, ReLU
print(baseline.key, "->", mlp_cost(baseline.widths), "(params, FLOPs)")
for key in ["c16k3-c16k3+-64:relu", "64+-64+:tanh", "16:relu"]:
    g = Genome.parse(key)
    print(f"{key:<22} depth {g.depth}  params {count_params(g):>6,}  FLOPs {count_flops(g):>9,}")

# %% [markdown]
# A genome that does not describe a network is refused with the reason, when it is created:

# %%
for bad in [lambda: Genome((16, 16), (0, 3), (False, False)),      # a convolution after a dense layer
            lambda: Genome((32, 64), (0, 0), (False, True)),       # a skip across a change of width
            lambda: Genome((16,), (4,), (False,)),                 # an even kernel
            lambda: Genome.parse("64-64:swish")]:                  # an unknown activation
    try:
        bad()
    except ValueError as err:
        print("ValueError:", err)

# %% [markdown]
# ## 3. Check it against PyTorch
#
# The formulas must agree with what PyTorch builds and runs: the parameter count with `sum(p.numel())` of the
# built model, the FLOPs with `torch.utils.flop_counter.FlopCounterMode`, on the MLP written by hand in
# `nn.Sequential` and on genomes drawn from a space that has convolutions and skips too.

# %%
hand = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
with FlopCounterMode(display=False) as counter:
    hand(torch.rand(1, 64))
assert mlp_cost([128, 128]) == (sum(p.numel() for p in hand.parameters()), counter.get_total_flops())
assert mlp_cost([128, 128]) == (count_params(baseline), count_flops(baseline))

conv_space = Space(depths=(1, 2, 3), widths=(8, 16, 32), kernels=(0, 3, 5), activations=("relu", "tanh", "gelu"))
rng = random.Random(0)
for _ in range(12):
    g = conv_space.sample(rng)
    model = build_model(g)
    with FlopCounterMode(display=False) as counter:
        logits = model(torch.rand(2, 1, 8, 8))
    assert logits.shape == (2, 10)
    assert count_params(g) == sum(p.numel() for p in model.parameters()), g.key
    assert 2 * count_flops(g) == counter.get_total_flops(), g.key
print("parameter and FLOP counts match PyTorch on 12 sampled genomes, e.g.", g.key)

# %% [markdown]
# **The space of this lesson.** To compare searchers honestly we need a space small enough to train *every*
# member: MLPs of depth 1 to 3, widths 16/32/64/128, ReLU or tanh, skip bits where the shapes allow
# (310 genomes). Sampling draws the depth, then each choice uniformly; a **mutation** (变异) changes one choice:
# a width, the activation, a skip bit, or inserts or removes a layer.

# %%
space = BENCH_SPACE
print(space, "->", len(space.all_genomes()), "genomes")
rng = random.Random(1)
parent = space.sample(rng)
for _ in range(5):
    op = rng.choice(space.mutations(parent))
    child = space.mutate(parent, rng, op)
    print(f"{parent.key:<20} --{op:>12}--> {child.key}")
    parent = child

# %% [markdown]
# ## 4. Regularized evolution from scratch, checked against the module
#
# Algorithm 1 of Real et al. in a dozen lines. It must make the same proposals as the tested
# `karpa_lab.nas.searchers.regularized_evolution` for the same random-number generator.

# %%
def evolve(space, score, budget, rng, P=20, S=5):
    population, history = deque(), []
    while len(history) < budget:
        if len(population) < P:                       # the random initial population
            child = space.sample(rng)
        else:                                         # tournament: best of S random members
            sample = [population[rng.randrange(len(population))] for _ in range(S)]
            parent = max(sample, key=lambda member: member[1])[0]
            child = space.mutate(parent, rng)
        population.append((child, score(child)))
        history.append(population[-1])
        if len(population) > P:
            population.popleft()                      # aging: the oldest dies, not the worst
    return history


toy_score = lambda g: -abs(np.log(count_params(g) / 3000)) + 0.1 * (g.activation == "tanh")  # a smooth toy target
mine = evolve(space, toy_score, 60, random.Random(5), P=10, S=3)
ref = regularized_evolution(space, toy_score, 60, random.Random(5), population_size=10, sample_size=3)
assert [g.key for g, _ in mine] == [g.key for g in ref.genomes]
print("same 60 proposals; best toy score", round(max(s for _, s in mine), 4), "for", ref.best()[0].key)

# %% [markdown]
# ## 5. A fair protocol, and a real search with `fit`
#
# The protocol (`karpa_lab.nas.protocol.Protocol`) trains each candidate with `karpa_lab.fit` for the **same
# budget** (240 AdamW steps of 64 digits, learning rate 3e-3), from the **same seeds** (0 and 1: the score is the
# mean of two runs, because one run is noisy), and scores it on the **validation** split; results are **cached**
# by genome, so a proposal seen before costs nothing; the **test** split is read once, at the very end
# (`final_test` refuses a second call). These networks are so small that a GPU would wait on Python, so they
# train on the CPU.
#
# First the baseline, then 12 proposals of regularized evolution ($P = 6$, $S = 2$). A live view shows the
# best-so-far curve and the latest candidate (in a terminal or under nbval it prints a line every few
# evaluations instead). Comparing it with random search needs many repeated searches: that is section 6.

# %%
protocol = Protocol(BENCH_BUDGET, seeds=(0, 1), device="cpu")
base = protocol.evaluate(baseline)
print(f"baseline {baseline.key}: validation {base.val_acc:.4f} (seeds: {base.val_accs}), {base.params:,} params, "
      f"{base.seconds:.1f} s for two trainings")

n_evals = by_scale(small=12, full=40)
monitor = SearchMonitor(budget=n_evals, every=3)
start = time.perf_counter()
trace = regularized_evolution(space, protocol.score, n_evals, random.Random(0), population_size=n_evals // 2,
                              sample_size=by_scale(2, 5), callback=monitor)
monitor.close()
print(f"{n_evals} proposals, {protocol.n_trained} trainings ({protocol.n_cache_hits} cache hits) "
      f"in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# Every candidate evaluated so far, accuracy against size. The baseline is a black star; the search only has to
# find a point up and to the left of it.

# %%
results = [r for k, r in protocol.cache.items() if k != baseline.key]
params = np.array([r.params for r in results])
vals = np.array([r.val_acc for r in results])
fig, ax = plt.subplots(figsize=(7, 3.5))
draw_front(ax, params, vals, label="evaluated")
ax.scatter([base.params], [base.val_acc], marker="*", s=180, color="k", label=f"baseline {baseline.key}")
ax.set(xlabel="parameters", ylabel="validation accuracy", title=f"{len(results)} candidates trained with fit")
ax.legend(fontsize=8)
plt.show()

matches = at_least_as_good(base.params, base.val_acc, params, vals)
assert len(matches) > 0, "the search found nothing as accurate as the baseline with no more parameters"
pick = results[max(matches, key=lambda i: (vals[i], -params[i]))]
print(f"search's pick: {pick.key}: validation {pick.val_acc:.4f} with {pick.params:,} params "
      f"({pick.params / base.params:.0%} of the baseline's)")

# %% [markdown]
# The search found an architecture at least as accurate as the baseline on validation with no more parameters
# (asserted above). Now, once, the test split:

# %%
test = protocol.final_test([baseline, pick.genome])
print({k: round(v, 4) for k, v in test.items()})
try:
    protocol.final_test([pick.genome])
except RuntimeError as err:
    print("RuntimeError:", err)

# %% [markdown]
# The printouts give the baseline's validation accuracy (the mean of its two seeds, each printed), the search's
# pick with its share of the baseline's parameters, and, once, both test accuracies. There are 360 test digits,
# so one digit is 0.28 points:
# differences of a point or less are within the noise — which the next section measures.
#
# ## 6. A tabular benchmark: every architecture, two seeds
#
# Two dozen trainings took most of the time of this lesson. Comparing two searchers properly needs hundreds of
# repeated searches — far beyond that. NAS-Bench-101 (Ying et al. 2019) and NAS-Bench-201 (Dong & Yang 2020)
# solved this by training every architecture of a space once and storing the results: a search then
# "trains" by a table look-up. Their tables are gigabytes. Ours is generated offline by
# `python -m karpa_lab.nas.tabular`: all 310 genomes of the space above, with the same protocol, seeds 0 and 1,
# the validation accuracy at 30, 60, 120 and 240 steps and the test accuracy.

# %%
bench = TabularBenchmark.load()
gen = bench.table["generated"]
print(f"{len(bench)} architectures x {len(bench.seeds)} seeds, {DEFAULT_PATH.stat().st_size / 1000:.0f} kB; "
      f"generated in {gen['cpu_seconds']:.0f} s of CPU ({gen['threads']} thread, torch {gen['torch']})")

# the protocol above is the table's: the same seeds give the same numbers (up to a digit or two across machines)
diffs = [abs(a - b) for k, r in protocol.cache.items() for a, b in zip(r.val_accs, bench.entry(k).val)]
print(f"largest difference between the {len(diffs)} live trainings and the table: {max(diffs):.4f}")
assert max(diffs) <= 0.02

# %% [markdown]
# ### The noise of one training run
#
# Each architecture was trained twice, from two seeds. How far apart are the two runs, compared with how far
# apart the best architectures are?

# %%
val = np.stack([bench.entry(k).val for k in bench.keys])         # (310, 2): final validation accuracy per seed
seed_gap = np.abs(val[:, 0] - val[:, 1])
ranked = bench.rank_by_val()
top_means = np.array([bench.entry(k).val.mean() for k in ranked[:20]])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
ax1.hist(seed_gap * 100, bins=np.arange(0, seed_gap.max() * 100 + 0.6, 0.28), color="C0")
ax1.set(xlabel="|seed 0 - seed 1| (points of validation accuracy)", ylabel="architectures",
        title="the same architecture, two seeds")
for i, k in enumerate(ranked[:20]):
    v = bench.entry(k).val
    ax2.plot([i, i], v, color="C1", lw=1)
    ax2.scatter([i, i], v, s=10, color="C1")
ax2.plot(range(20), top_means, "k_", ms=10, label="mean of the two seeds")
ax2.set(xlabel="rank by mean validation accuracy", ylabel="validation accuracy", title="the 20 best architectures")
ax2.legend(fontsize=8, loc="upper right")
plt.show()
print(f"seed gap: median {np.median(seed_gap) * 100:.2f} points, 90th percentile {np.percentile(seed_gap, 90) * 100:.2f}")
print(f"mean validation of #1 vs #10: {top_means[0]:.4f} vs {top_means[9]:.4f} "
      f"(gap {(top_means[0] - top_means[9]) * 100:.2f} points)")

# %% [markdown]
# Compare the two printed gaps: how far two seeds of one architecture differ (median and 90th percentile),
# and how far the best architecture is from the 10th best in their *means*. The first is the larger: the ranking of the top of this space is mostly noise: a single training run cannot tell its best ten
# architectures apart. This is what NAS-Bench-201 and "NAS evaluation is frustratingly hard" (Yang et al. 2020)
# report for larger spaces too, and it is why every claim below is an average over many repeats.
#
# ### Random search against regularized evolution, 200 times each
#
# Each run gets 50 evaluations; an evaluation returns the validation accuracy of one of the two seeds, drawn
# at random, as a fresh training run would. The plot shows the mean best-so-far curve of each searcher with a
# 95 % band, and, on the right, the test regret of the architecture each run returned.

# %%
repeats = by_scale(small=200, full=1000)
result = compare(bench, population_size=10, sample_size=3, budget=50, repeats=repeats)
fig = plt.figure(figsize=(11, 3.6))
draw_compare(fig, result, bench)
plt.show()
num = result["numbers"]
for name in ("random", "evolution"):
    n = num[name]
    print(f"{name:<10} final best val {n['final_best_val']:.4f} ± {n['sem']:.4f} (s.e.)  "
          f"returned a top-3 genome in {n['top3_rate']:.0%} of runs  "
          f"test regret {n['test_regret'] * 100:.2f} ± {n['test_regret_sem'] * 100:.2f} points")
diff, noise = num["evolution_minus_random"], 1.96 * np.hypot(num["random"]["sem"], num["evolution"]["sem"])
print(f"evolution - random: {diff * 100:+.3f} points; 95 % interval of the difference ±{noise * 100:.3f}")

# The honest claim here is equivalence: the whole 95 % interval of the difference lies within +-0.1 points
# of accuracy (a third of one test digit). The control: random search with a fifth of the budget (10
# evaluations) is a searcher that really is worse, and the same check must fail for it.
EQUIVALENCE = 0.001  # +-0.1 points of accuracy


def equivalent(d, half_width):
    return abs(d) + half_width < EQUIVALENCE


short = repeat_search(bench, random_search, 10, repeats, seed=0, name="random, 10 evaluations")
short_end = short.best_val[:, -1]
short_diff = float(short_end.mean()) - num["random"]["final_best_val"]
short_noise = 1.96 * np.hypot(float(short_end.std(ddof=1) / np.sqrt(len(short_end))), num["random"]["sem"])
print(f"random with 10 evaluations - random with 50: {short_diff * 100:+.3f} points ±{short_noise * 100:.3f}")
assert equivalent(diff, noise), (diff, noise)
assert not equivalent(short_diff, short_noise), (short_diff, short_noise)

# %% [markdown]
# **Overfitting the validation split.** The best-so-far value is the maximum of 50 noisy numbers, so it is
# biased upwards (the winner's curse, 赢家诅咒): the architecture a search returns looks better during the search
# than it is. Compare what the search saw with the same architecture's mean over both seeds and its test accuracy:

# %%
for name in ("random", "evolution"):
    n = num[name]
    print(f"{name:<10} saw {n['final_best_val']:.4f} on validation -> returned architecture: mean validation "
          f"{n['returned_mean_val']:.4f}, test {n['returned_test']:.4f}")
    assert n["final_best_val"] - n["returned_test"] >= 0.005, "expected an optimistic bias of the search's best value"

# %% [markdown]
# Read the printed lines (200 runs each at the default scale, 50 evaluations, $P = 10$, $S = 3$): both searchers
# end at almost the same best-so-far validation accuracy, and the difference is of the order of its own 95 %
# interval, hundredths of a point, far less than one test digit. Whether evolution is "ahead" at this scale is not
# a robust claim: it sits at the edge of the noise. What is
# robust, and asserted, is the equivalence: the whole interval lies within ±0.1 points. That is what the
# literature reports for small spaces, where random search is a strong baseline (Li & Talwalkar 2019). The check
# has power: a random search with a fifth of the budget is measurably worse and fails it. The top-3 rates and the
# test regrets (printed, with their standard errors) tell the same story.
#
# ### The Pareto front of the whole space
#
# With every architecture in the table we can draw the true front of mean test accuracy against parameters, and
# place the hand-designed baseline on it.

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
front = draw_front(ax, bench.params, bench.mean_test, label="all 310")
b = bench.entry(baseline)
ax.scatter([b.params], [b.test.mean()], marker="*", s=180, color="k", zorder=4, label=f"baseline {baseline.key}")
ax.set(xlabel="parameters", ylabel="test accuracy (mean of 2 seeds)", ylim=(0.85, 1.0))
ax.legend(fontsize=8, loc="lower right")
plt.show()
better = at_least_as_good(b.params, b.test.mean(), bench.params, bench.mean_test)
better = [bench.keys[i] for i in better if bench.keys[i] != baseline.key]
smallest = min(bench.entry(k).params for k in better)
print(f"{len(better)} architectures are at least as accurate on test as the baseline with no more parameters; "
      f"the smallest ({smallest:,} params): {[k for k in better if bench.entry(k).params == smallest]}")
print(f"baseline: {b.params:,} params, mean test {b.test.mean():.4f}")
print("on the front (params, mean test):")
for i in front:
    print(f"  {bench.keys[i]:<20}{bench.params[i]:>8,}{bench.mean_test[i]:>9.4f}")
assert better, "the baseline is on the Pareto front"

# %% [markdown]
# The printout places the baseline: it is *not* on the front (asserted), and it names how many architectures
# are at least as accurate on test with no more parameters, and the smallest of them. Read the front's table
# from the top: test accuracy climbs quickly over the first few thousand parameters and then flattens; past
# the flat part this problem buys almost nothing with size.
#
# ## 7. Play: the searchers' playground
#
# Population size $P$, tournament size $S$, budget and repeats, all on the table (each setting re-runs both
# searchers hundreds of times in about a second). Try $S = 1$ (no selection: evolution becomes a random walk)
# and $S = P$ (always mutate the current best: greedy), and a budget of 200.

# %%
display(search_playground(bench))

# %% [markdown]
# ## 8. Exercises
#
# 1. **Predict, then measure.** With $S = 1$, what should evolution's final best-so-far be compared with random
#    search? And with $S = P = 20$? Use `compare(bench, population_size=20, sample_size=1)` and explain.
# 2. **Aging against killing the worst.** Copy `evolve` and remove the *worst* member instead of the oldest
#    (non-regularized evolution). Run both 200 times on the table (`bench.scorer(random.Random(seed))` is the
#    score) and compare the final best-so-far, the top-3 rate and the test regret. Which one overfits the
#    validation noise more, and why?
# 3. **Cheaper estimates.** The table stores the validation accuracy after 30, 60 and 120 steps too
#    (`bench.entry(k).val_curves`). Compute the Spearman rank correlation between the accuracy at 60 steps and at
#    240 steps over all architectures. Would a search that trains each candidate 4× shorter, and so evaluates 4×
#    more of them, find better architectures? Try it: a score function that returns the 60-step value.
# 4. **A size budget.** Search for the most accurate architecture with at most 5,000 parameters: wrap the score
#    (`lambda g: score(g) if count_params(g) <= 5000 else 0.0`) and compare with reading the answer off the
#    Pareto front.
# 5. **A bigger space.** Add width 256 and the GELU activation to the space (`Space(widths=..., activations=...)`).
#    How many genomes does it have? How long would the table take to generate at the measured CPU time per
#    architecture? (`python -m karpa_lab.nas.tabular` regenerates the table of the lesson.)
#
# Worked solutions, each one run and checked: [solutions/10_nas_search.ipynb](solutions/10_nas_search.ipynb).
#
# ## 9. Summary
#
# - NAS = search space + search strategy + performance estimation. A genome names an architecture compactly;
#   invalid genomes are refused with the reason; parameter and FLOP counts follow from the shapes (checked
#   against PyTorch).
# - A fair protocol gives every candidate the same budget and seeds, searches on validation, reads test once.
# - On a small space, regularized evolution and random search end equivalent within a tenth of a point (asserted;
#   a searcher with a fifth of the budget fails the same check); the differences between the best
#   architectures are the size of the seed noise, so the "best" on validation is partly luck — measure with
#   repeats and a benchmark table before believing a searcher is better.
# - The Pareto front answers the practical question: for each size, the best accuracy; the hand-designed
#   baseline was not on it.
#
# **Next (lesson 11):** training every candidate from scratch is what made this lesson slow. One-shot search
# trains a single supernet that contains every architecture (DARTS), and a real tool (Optuna) adds smarter
# samplers, early stopping of bad candidates and many workers sharing one study.
#
# | English | 中文 | one line |
# |---|---|---|
# | neural architecture search (NAS) | 神经架构搜索 | searching for a network's architecture instead of designing it |
# | search space | 搜索空间 | the set of architectures a search may return |
# | search strategy | 搜索策略 | the rule that proposes the next architecture to evaluate |
# | performance estimation | 性能评估 | how a candidate's quality is measured (training, a table, a supernet) |
# | genome | 基因组编码 | a compact description from which an architecture is built |
# | random search | 随机搜索 | sample architectures uniformly from the space |
# | regularized evolution | 正则化进化 | mutate the best of a random sample, remove the oldest member |
# | tournament selection | 锦标赛选择 | pick the best of a small random sample as the parent |
# | mutation | 变异 | change one choice of a genome |
# | tabular benchmark | 表格基准 | every architecture of a space trained once, the results stored in a table |
# | test regret | 测试遗憾 | the best test accuracy in the space minus that of the architecture returned |
# | winner's curse | 赢家诅咒 | the best of many noisy scores overestimates the true value |
# | Pareto front | 帕累托前沿 | the architectures that no other beats on both accuracy and size |
# | negative control | 对照实验 | the same check run on a model that cannot have learned; it must fail |
