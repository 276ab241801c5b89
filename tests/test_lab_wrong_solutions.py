"""The tests of labs 02, 03 and 04 bite: a plausible wrong solution of each graded part loses that part's points.

Each submission below is the worked solution with one answer cell rewritten the way a student might get it
wrong; the grader (sandboxed, as `make autograde` runs it) must take away exactly the points of the tests
named for it, and keep all the others. Each lab also gets a forbidden library call reached by an alias: the
rule is behavioural, so every test whose call reaches it loses its points. One autograde run per lab.
"""

from __future__ import annotations

import json
import shutil

import pytest
from test_labs import LABS, cells_by_id, points, solved, submit

from karpa_lab.autograde import pipeline as driver

pytest.importorskip("nbgrader")
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",
                                         "ignore::nbformat.warnings.MissingIDFieldWarning")]

# student: (answer cell, edits [(text of the worked solution, what the student wrote instead)], the tests that
#           lose their points, a phrase of the report that says why)
GAN = {
    "d_log_of_sigmoid": (  # the textbook formula, which overflows to log(0) at extreme logits
        "losses", [("return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()",
        "return -torch.log(torch.sigmoid(real_logits)).mean() - torch.log(1 - torch.sigmoid(fake_logits)).mean()")],
        ["test_discriminator_loss"], "log(sigmoid(l)) underflows"),
    "g_log_of_sigmoid": (
        "losses", [("return -F.logsigmoid(fake_logits).mean()\n",
                    "return -torch.log(torch.sigmoid(fake_logits)).mean()\n")],
        ["test_generator_loss"], "generator_loss is inf for logits of ±40, ±200 and ±1000"),
    "same_noise": (  # one draw of noise for both players: G trains on the very fakes D has just seen
        "train_step", [("B = real.shape[0]\n", "B = real.shape[0]\n    z = gan.noise(B, noise)\n"),
                       ("fakes = gan.generator(gan.noise(B, noise))", "fakes = gan.generator(z)"),
                       ("generator_loss(gan.discriminator(gan.generator(gan.noise(B, noise))))",
                        "generator_loss(gan.discriminator(gan.generator(z)))")],
        ["test_train_step"], "the generator's weights differ"),
    "nearest_centre": (  # every sample counts for its nearest mode, however far from it
        "modes_covered", [("near = torch.cdist(samples.double(), centers.double()) <= 3 * std   # (N, K)",
        "near = torch.nn.functional.one_hot(torch.cdist(samples, centers).argmin(1), len(centers)).bool()")],
        ["test_modes"], "not for its nearest centre"),
    "alias_bce": (  # the forbidden library loss, fetched by a computed name: the step that uses it loses too
        "losses", [("return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()",
        'bce = getattr(F, "binary_cross_" + "entropy_with_logits")\n    '
        "return bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))")],
        ["test_discriminator_loss", "test_train_step"], "binary_cross_entropy_with_logits, which this lab asks"),
    "alias_mode_count": (  # the course's own mode count, reached through the mixture's method
        "modes_covered", [("near = torch.cdist(samples.double(), centers.double()) <= 3 * std   # (N, K)",
        'count = getattr(GaussianMixture2D(centers, std), "modes_" + "covered")\n    '
        "return count(samples, 3.0, max(1, round(0.01 * len(samples))))")],
        ["test_modes"], "GaussianMixture2D.modes_covered, which this lab asks"),
}
ATTENTION = {
    "one_head": (  # attention over all of d_model at once, whatever n_heads says
        "self_attention", [("d_h = D // n_heads", "n_heads, d_h = 1, D")], ["test_self_attention_values"],
        "self_attention does not match nn.MultiheadAttention"),
    "no_causal_mask": (  # only the padding mask: position t reads the whole sequence
        "causal_self_attention", [("mask = causal_mask(x.shape[1])                      # (T, T)",
        "mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool)")], ["test_causality"], "sees the future"),
    "padding_on_queries": (  # the pads are taken out of the queries, not the keys: every token still reads them
        "causal_self_attention", [("padding_mask[:, None, None, :]", "padding_mask[:, None, :, None]")],
        ["test_padding"], "moved"),
    "alias_sdpa": (  # PyTorch's fused attention by a computed name: every test that reaches attention loses
        "attention", [("weights = torch.softmax(scores, dim=-1)\n    return weights @ v, weights",
        'weights = torch.softmax(scores, dim=-1)\n    fused = getattr(F, "scaled_dot_product" + "_attention")\n    '
        "return fused(q, k, v, attn_mask=mask), weights")],
        ["test_attention_values", "test_attention_weights", "test_self_attention_values", "test_causality",
         "test_padding"], "scaled_dot_product_attention, which this lab asks"),
    "alias_aten": (
        "attention", [("weights = torch.softmax(scores, dim=-1)\n    return weights @ v, weights",
        "return tuple(torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=mask))")],
        ["test_attention_values", "test_attention_weights", "test_self_attention_values", "test_causality",
         "test_padding"], "_scaled_dot_product_attention_math, which this lab asks"),
    "alias_module": (  # nn.MultiheadAttention with the given weights copied in
        "self_attention", [("B, T, D = x.shape\n",
        'mha = getattr(nn, "Multihead" + "Attention")(x.shape[-1], n_heads, batch_first=True).to(x.dtype)\n'
        "    with torch.no_grad():\n"
        "        mha.in_proj_weight.copy_(in_proj_weight)\n        mha.in_proj_bias.copy_(in_proj_bias)\n"
        "        mha.out_proj.weight.copy_(out_proj_weight)\n        mha.out_proj.bias.copy_(out_proj_bias)\n"
        "    return mha(x, x, x, attn_mask=None if mask is None else ~mask, need_weights=False)[0]\n")],
        ["test_self_attention_values", "test_causality", "test_padding"], "multi_head_attention"),
}

NAS = {
    "mutate_may_not_edit": (  # the new width drawn from all widths, the old one included: sometimes no edit
        "mutate", [("widths[i] = rng.choice([w for w in space.widths if w != widths[i]])",
        "widths[i] = rng.choice(space.widths)")], ["test_mutate"], "exactly one edit"),
    "removes_the_worst": (  # the population keeps its best: a lucky evaluation lives forever
        "evolution_step", [("population.popleft()", "population.remove(min(population, key=lambda m: m[1]))")],
        ["test_step_invariants"], "the worst member was removed"),
    "tournament_without_replacement": (
        "evolution_step", [("sample = [population[rng.randrange(len(population))] for _ in range(sample_size)]",
        "sample = rng.sample(list(population), sample_size)")], ["test_tournament"], "test_tournament: "),
    "evaluated_twice": (  # the initial genomes scored once for the population and again for the trace
        "evolution_search", [("trace.add(*population[-1])", "trace.add(genome, score(genome))")],
        ["test_search_budget", "test_beats_random"], "score was called"),
    "alias_space_mutate": (  # the course's own mutation by a computed name: the search that uses it loses too
        "mutate", [("widths, activation = list(genome.widths), genome.activation\n",
        'return getattr(space, "mut" + "ate")(genome, rng)\n')],
        ["test_mutate", "test_search_budget", "test_beats_random"], "Space.mutate, which this lab asks"),
}


def _variant(good: dict, cell: str, edits: list[tuple[str, str]]) -> dict:
    """The worked solution with ``edits`` (old, new) made in its answer cell ``cell``."""
    nb = json.loads(json.dumps(good))
    source = cells_by_id(nb)[cell]["source"]
    for old, new in edits:
        assert source.count(old) == 1, (cell, old)  # the worked solution still reads as this test expects
        source = source.replace(old, new)
    cells_by_id(nb)[cell]["source"] = source
    return nb


def grade_variants(tmp_path, lab: str, variants: dict) -> None:
    labs = tmp_path / "labs"
    labs.mkdir()
    shutil.copy(LABS / "nbgrader_config.py", labs)
    shutil.copytree(LABS / lab, labs / lab)
    (folder,) = driver.release(tmp_path / "release", labs, [lab])
    good = solved(folder / f"{lab}.ipynb", lab)
    subs = tmp_path / "submitted"
    submit(subs, "ada", lab, good)
    for student, (cell, edits, _, _) in variants.items():
        submit(subs, student, lab, _variant(good, cell, edits))
    course = tmp_path / "course"
    results = {r.student: r for r in driver.autograde(subs, course, labs, timeout=60)}
    report = (course / "report.txt").read_text(encoding="utf-8")
    print(report)
    pts = points(LABS / lab / f"{lab}.ipynb")
    full = sum(pts.values())
    expected = {"ada": full} | {s: full - sum(pts[t] for t in v[2]) for s, v in variants.items()}
    assert {s: r.score for s, r in results.items()} == expected, report
    assert results["ada"].problems == [], report
    for student, (*_, lost, why) in variants.items():
        problems = " | ".join(results[student].problems)
        for test in lost:
            assert f"{test}: " in problems, (student, test, report)
        assert why in problems, (student, why, report)


def test_lab02_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "02_gan_step", GAN)


def test_lab03_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "03_self_attention", ATTENTION)


def test_lab04_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "04_nas_evolution", NAS)
