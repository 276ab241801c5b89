"""The tests of every lab bite: a plausible wrong solution of each graded part loses that part's points.

Each submission below is the worked solution with one answer cell rewritten the way a student might get it
wrong; the grader (sandboxed, as `make autograde` runs it) must take away exactly the points of the tests
named for it, and keep all the others. Each lab also gets a forbidden library call reached by an alias: the
rule is behavioural, so every test whose call reaches it loses its points. One autograde run per lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_labs import LABS, grade_edits, points

pytest.importorskip("nbgrader")
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",
                                         "ignore::nbformat.warnings.MissingIDFieldWarning")]

# student: (answer cell, edits [(text of the worked solution, what the student wrote instead)], the tests that
#           lose their points, a phrase of the report that says why)
LSTM = {
    "course_cell": (  # the course's plain cell (karpa_lab.models.lstm.lstm_step) copied in: no projection
        "lstm_cell", [("shown = torch.sigmoid(a_o) * torch.tanh(c_next)             # (B, H)\n"
                       "    return shown @ weight_hr.T, c_next                          # (B, P), (B, H)",
                       "h_next = torch.sigmoid(a_o) * torch.tanh(c_next)\n    return h_next, c_next")],
        ["test_cell_shapes", "test_cell_values", "test_cell_gradients", "test_sequence_values",
         "test_sequence_chunks"], "before the projection"),
    "shared_zeros": (  # one zeros tensor for both parts of the start state, as for a cell without a projection
        "lstm_sequence", [("state = (x.new_zeros(x.shape[1], P), x.new_zeros(x.shape[1], H))",
                           "state = (x.new_zeros(x.shape[1], P),) * 2")],
        ["test_sequence_values", "test_sequence_chunks"], "start from h_0 = zeros (B, P) and c_0 = zeros (B, H)"),
}
HINGE_D = "return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()"
MODE_COUNTS = "counts = torch.bincount(nearest[dist <= 3 * std], minlength=len(centers)).double()   # (K,)"
GAN = {
    "course_losses": (  # the course's cross-entropy losses (karpa_lab.models.gan), written out: not the hinge GAN
        "losses", [(HINGE_D, "return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()"),
                   ("return -fake_logits.mean()", "return -F.logsigmoid(fake_logits).mean()")],
        ["test_discriminator_loss", "test_generator_loss", "test_train_step"], "cross-entropy"),
    "no_margin": (  # max(0, -l): the fakes only need a negative score, the reals a positive one
        "losses", [(HINGE_D, HINGE_D.replace("1 - real", "-real").replace("1 + fake", "fake"))],
        ["test_discriminator_loss", "test_train_step"], "the margin is missing"),
    "hinge_for_g": (  # the discriminator's hinge applied to the generator: no gradient once D is fooled
        "losses", [("return -fake_logits.mean()", "return torch.relu(1 - fake_logits).mean()")],
        ["test_generator_loss", "test_train_step"], "has no relu and no margin"),
    "same_noise": (  # one draw of noise for both players: G trains on the very fakes D has just seen
        "train_step", [("B = real.shape[0]\n", "B = real.shape[0]\n    z = gan.noise(B, noise)\n"),
                       ("fakes = gan.generator(gan.noise(B, noise))", "fakes = gan.generator(z)"),
                       ("generator_loss(gan.discriminator(gan.generator(gan.noise(B, noise))))",
                        "generator_loss(gan.discriminator(gan.generator(z)))")],
        ["test_train_step"], "the generator's weights differ"),
    "nearest_centre": (  # every sample counts for its nearest mode, however far from it
        "mode_kl", [(MODE_COUNTS, "counts = torch.bincount(nearest, minlength=len(centers)).double()")],
        ["test_mode_kl"], "not for its nearest centre"),
    "reversed_kl": (  # KL(u || q): infinite as soon as one mode is missing
        "mode_kl", [("q = q[q > 0]                                                                     # 0 log 0 = 0\n"
                     "    return float((q * torch.log(len(centers) * q)).sum())",
                     "return float((torch.log(1 / (len(centers) * q)) / len(centers)).sum())")],
        ["test_mode_kl"], "a collapse onto modes 0, 3 and 5: KL = inf"),
    "alias_hinge": (  # PyTorch's hinge loss by a computed name: the step that uses it loses too
        "losses", [(HINGE_D, 'hinge = getattr(F, "hinge_" + "embedding_loss")\n    '
                             "return hinge(real_logits, -torch.ones_like(real_logits)) + "
                             "hinge(-fake_logits, -torch.ones_like(fake_logits))")],
        ["test_discriminator_loss", "test_train_step"], "hinge_embedding_loss, which this lab asks"),
    "alias_assign": (  # the course's assignment of samples to modes, reached through the mixture's method
        "mode_kl", [("dist, nearest = torch.cdist(samples.double(), centers.double()).min(dim=1)      # (N,), (N,)\n"
                     "    " + MODE_COUNTS,
                     'index = getattr(GaussianMixture2D(centers, std), "as" + "sign")(samples, 3.0)\n'
                     "    counts = torch.bincount(index[index >= 0], minlength=len(centers)).double()")],
        ["test_mode_kl"], "GaussianMixture2D.assign, which this lab asks"),
}
ADD_BIAS = "    if bias is not None:\n        scores = scores + bias\n"
ALIBI_OUT = 'return bias.masked_fill(offset > 0, float("-inf")).to(dtype)'
ALL_ATTENTION = ["test_attention_values", "test_attention_weights", "test_self_attention_values", "test_causality",
                 "test_padding"]
AFTER_ALIBI = ["test_alibi_bias", "test_self_attention_values", "test_causality", "test_padding"]
ATTENTION = {
    "no_bias": (  # the bias argument ignored: plain attention, so the layer loses ALiBi and its causal mask
        "attention", [(ADD_BIAS, "")], ALL_ATTENTION, "the bias is left out"),
    "bias_scaled": (  # the bias added before the division by sqrt(d_k)
        "attention", [("scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n" + ADD_BIAS,
                       "scores = q @ k.transpose(-2, -1)\n" + ADD_BIAS
                       + "    scores = scores / math.sqrt(q.shape[-1])\n")],
        ALL_ATTENTION, "the bias is divided by sqrt(d_k)"),
    "symmetric": (  # -m |i - j| everywhere: the bidirectional biases, which see the future
        "alibi_bias", [(ALIBI_OUT, "return (-bias.abs()).to(dtype)")], AFTER_ALIBI, "alibi_bias(2, 3) should be"),
    "reversed_slopes": (  # the steepest slope on the last head
        "alibi_bias", [("torch.arange(1, n_heads + 1, dtype=torch.float64)",
                        "torch.arange(n_heads, 0, -1, dtype=torch.float64)")],
        AFTER_ALIBI, "alibi_bias(2, 3) should be"),
    "course_causal_mask": (  # the course's causal mask as the biases: no slopes, no distances
        "alibi_bias", [(ALIBI_OUT, 'return torch.zeros_like(bias).masked_fill(offset > 0, float("-inf")).to(dtype)')],
        AFTER_ALIBI, "alibi_bias(2, 3) should be"),
    "one_head": (  # attention over all of d_model at once, whatever n_heads says
        "alibi_self_attention", [("d_h = D // n_heads", "n_heads, d_h = 1, D")],
        ["test_self_attention_values", "test_causality", "test_padding"], "one head over all of d_model"),
    "padding_on_queries": (  # the pads are taken out of the queries, not the keys: every token still reads them
        "alibi_self_attention", [("padding_mask[:, None, None, :]", "padding_mask[:, None, :, None]")],
        ["test_padding"], "moved"),
    "alias_sdpa": (  # PyTorch's fused attention by a computed name: every test that reaches attention loses
        "attention", [("weights = torch.softmax(scores, dim=-1)\n    return weights @ v, weights",
        'weights = torch.softmax(scores, dim=-1)\n    fused = getattr(F, "scaled_dot_product" + "_attention")\n    '
        "return fused(q, k, v, attn_mask=scores - q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])), weights")],
        ALL_ATTENTION, "scaled_dot_product_attention, which this lab asks"),
    "alias_aten": (
        "attention", [("weights = torch.softmax(scores, dim=-1)\n    return weights @ v, weights",
        "return tuple(torch.ops.aten._scaled_dot_product_attention_math(q, k, v, attn_mask=scores - q @ "
        "k.transpose(-2, -1) / math.sqrt(q.shape[-1])))")],
        ALL_ATTENTION, "_scaled_dot_product_attention_math, which this lab asks"),
    "alias_module": (  # nn.MultiheadAttention with the given weights copied in, the biases as its float mask
        "alibi_self_attention", [("B, T, D = x.shape\n",
        'mha = getattr(nn, "Multihead" + "Attention")(x.shape[-1], n_heads, batch_first=True).to(x.dtype)\n'
        "    with torch.no_grad():\n"
        "        mha.in_proj_weight.copy_(in_proj_weight)\n        mha.in_proj_bias.copy_(in_proj_bias)\n"
        "        mha.out_proj.weight.copy_(out_proj_weight)\n        mha.out_proj.bias.copy_(out_proj_bias)\n"
        "    ali = alibi_bias(n_heads, x.shape[1], x.dtype).repeat(x.shape[0], 1, 1)\n"
        "    pads = None if padding_mask is None else ~padding_mask\n"
        "    return mha(x, x, x, attn_mask=ali, key_padding_mask=pads, need_weights=False)[0]\n")],
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


CONV_KERNEL = ('weight[:, :, u, v])\n    return', 'weight.flip(2, 3)[:, :, u, v])\n    return')
CONV = {
    "flipped_kernel": (  # the textbook convolution flips the kernel; F.conv2d (a cross-correlation) does not
        "conv2d_forward", [CONV_KERNEL], ["test_forward_values"], "conv2d_forward does not match F.conv2d"),
    "no_padding": (  # right for padding 0, the wrong size otherwise
        "conv2d_forward", [("xp = F.pad(x, (pw, pw, ph, ph))\n    h_out", "xp = x\n    h_out")],
        ["test_forward_shapes", "test_forward_values"], "stride=2, padding=1: the output is"),
    "flipped_grad_x": (  # half-remembering that "the gradient is a convolution with the flipped kernel"
        "conv2d_backward", [('torch.einsum("bohw,oc->bchw", grad_out, weight[:, :, u, v])',
                             'torch.einsum("bohw,oc->bchw", grad_out, weight.flip(2, 3)[:, :, u, v])')],
        ["test_grad_input"], "grad_x does not match autograd"),
    "stride_blind_weight": (  # dL/dweight read from stride-1 windows whatever the stride
        "conv2d_backward", [("grad_out, xp[:, :, rows, cols])", "grad_out, xp[:, :, u:u + h_out, v:v + w_out])")],
        ["test_grad_weight"], "grad_weight does not match autograd"),
    "mean_bias": (
        "conv2d_backward", [("grad_out.sum(dim=(0, 2, 3))", "grad_out.mean(dim=(0, 2, 3))")],
        ["test_grad_bias"], "grad_bias does not match autograd"),
    "alias_conv": (  # the library's convolution by a computed name
        "conv2d_forward", [("### BEGIN SOLUTION", "return getattr(F, 'conv' + '2d')(x, weight, bias, stride, "
                                                  "padding)\n    ### BEGIN SOLUTION")],
        ["test_forward_shapes", "test_forward_values"], "called conv2d, which this lab asks you to write yourself"),
    "switched_off": (  # the same, with torch function modes (the grader's watch among them) switched off
        "conv2d_forward", [("### BEGIN SOLUTION", "with getattr(torch._C, 'DisableTorch' + 'Function')():\n"
                            "        return getattr(F, 'conv' + '2d')(x, weight, bias, stride, padding)\n"
                            "    ### BEGIN SOLUTION")],
        ["test_forward_shapes", "test_forward_values"],
        "torch._C.DisableTorchFunction (switched off the grader's watch)"),
    "autograd": (  # the gradients from autograd through the student's own forward pass, names hidden
        "conv2d_backward", [("### BEGIN SOLUTION",
                             "x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()\n"
                             "    b = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)\n"
                             "    y = conv2d_forward(x, weight, b, stride, padding)\n"
                             "    getattr(y, 'back' + 'ward')(grad_out)\n"
                             "    return tuple(getattr(t, 'gr' + 'ad') for t in (x, weight, b))\n"
                             "    ### BEGIN SOLUTION")],
        ["test_grad_input", "test_grad_weight", "test_grad_bias"], "the notebook's functions called backward"),
}

BEAM_KEEP = "kept = sorted(candidates, key=lambda item: -item[1])[:beam]"
BEAM = {
    "last_step_sort": (  # candidates ranked by the last word's log-probability, not the whole sequence's
        "beam_search", [(BEAM_KEEP, "kept = sorted(candidates, key=lambda item: -float(logp[t, item[0][-2] if "
                                    "len(item[0]) > 1 else EOS, item[0][-1]]))[:beam]")],
        ["test_beam_reference"], "a hidden test failed"),
    "no_finishing": (  # no length bookkeeping: a sequence that emitted EOS stays live and keeps growing
        "beam_search", [("finished += [c for c in kept if c[0][-1] == EOS]\n"
                         "        live = [c for c in kept if c[0][-1] != EOS]", "live = kept")],
        ["test_beam_one", "test_beam_reference", "test_beam_exhaustive"], "beam as wide as the space: sequence 0"),
    "drops_full_length": (  # the sequences that reach the last step never counted as finished
        "beam_search", [("return sorted(finished + live,", "return sorted(finished,")],
        ["test_beam_one", "test_beam_reference", "test_beam_exhaustive"], "sequences returned, expected"),
    "sums_probabilities": (  # probabilities added up instead of log-probabilities
        "sequence_logprob", [("score += float(logp[t, last, token])", "score += float(logp[t, last, token].exp())")],
        ["test_logprob"], "sequence_logprob(logp, [0]) ="),
}

KD_SOFT = "return alpha * T**2 * soft_cross_entropy(student_logits, teacher_logits, T) + (1 - alpha) * hard"
DISTILL = {
    "no_max_shift": (  # exp of the raw logits: NaN (inf / inf) for logits near 1000
        "softmax_t", [("e = torch.exp(z - z.max(dim=-1, keepdim=True).values)", "e = torch.exp(z)")],
        ["test_softmax"], "NaN"),
    "hard_teacher": (  # the teacher's targets at T = 1 while the student is softened: so is the loss built on it
        "soft_cross_entropy", [("p = softmax_t(teacher_logits.detach(), T)",
                                "p = softmax_t(teacher_logits.detach(), 1.0)")],
        ["test_soft_ce", "test_kd_loss", "test_kd_gradient"], "soft_cross_entropy at T = 3.0 is off by"),
    "no_t_squared": (
        "distillation_loss", [(KD_SOFT, KD_SOFT.replace("alpha * T**2 *", "alpha *"))],
        ["test_kd_loss", "test_kd_gradient"], "distillation_loss at T = 4.0, alpha = 0.9 is off by"),
    "t_not_squared": (
        "distillation_loss", [(KD_SOFT, KD_SOFT.replace("T**2", "T"))],
        ["test_kd_loss", "test_kd_gradient"], "distillation_loss at T = 4.0, alpha = 0.9 is off by"),
    "alias_softmax": (  # the library's softmax by a computed name: every part calls softmax_t
        "softmax_t", [("### BEGIN SOLUTION", "return getattr(torch, 'soft' + 'max')(logits / T, dim=-1)\n"
                                             "    ### BEGIN SOLUTION")],
        ["test_softmax", "test_soft_ce", "test_kd_loss", "test_kd_gradient"],
        "the notebook's functions called softmax"),
}

LOSS = "return -(advantage * logp).mean()"
POLICY = {
    "not_reversed": (  # the recursion run forwards: each step gets what came before it (on the corridor, whose
        # only reward is the last step's, the policy still learns: Part 1's tests are the ones that catch it)
        "returns_to_go", [("for t in range(len(rewards) - 1, -1, -1):", "for t in range(len(rewards)):")],
        ["test_returns_values", "test_returns_reset"], "returns_to_go, gamma 0.5 is off by"),
    "no_reset": (  # the discount never reset: one episode's return takes in the next one's rewards
        "returns_to_go", [("running = rewards[t] + gamma * running * (0.0 if dones[t] else 1.0)",
                           "running = rewards[t] + gamma * running")],
        ["test_returns_reset"], "returns_to_go over two episodes is off by"),
    "baseline_after_product": (  # the baseline subtracted from the loss instead of from each return
        "reinforce_loss", [(LOSS, "return -(returns.detach() * logp).mean() + baseline.mean()")],
        ["test_loss_values", "test_loss_gradient"], "reinforce_loss is off by"),
    "alias_course_returns": (  # the course's own returns by a computed name
        "returns_to_go", [("### BEGIN SOLUTION", "import importlib\n    rl = importlib.import_module('karpa_lab.' + "
                           "'rl')\n    return getattr(rl, 'discounted_' + 'returns')(rewards, dones, gamma)\n"
                           "    ### BEGIN SOLUTION")],
        ["test_returns_values", "test_returns_reset", "test_training"], "karpa_lab.rl.discounted_returns"),
}

GRAM = "return torch.einsum(\"bim,bjm->bij\", flat, flat) / flat.shape[2]"
STYLE = "total = total + (gx - gt).pow(2).sum() / gt.pow(2).sum()"
GRAM_STYLE = {
    "unnormalised": (  # F F^T without 1/M: the style of a texture then depends on its size
        "gram_matrix", [(GRAM, GRAM.replace(" / flat.shape[2]", ""))],
        ["test_gram_values", "test_gram_gradient", "test_style_loss", "test_style_shift"], "gram_matrix is off by"),
    "transposed": (  # F^T F: a matrix over positions, (B, M, M)
        "gram_matrix", [(GRAM, GRAM.replace("bim,bjm->bij", "bim,bin->bmn").replace("flat.shape[2]", "flat.shape[1]"))],
        ["test_gram_shape", "test_gram_values", "test_gram_gradient", "test_style_loss", "test_style_shift"],
        "the Gram matrix is (B, C, C)"),
    "absolute": (  # the squared distance without dividing by the target's size
        "style_loss", [(STYLE, STYLE.replace(" / gt.pow(2).sum()", ""))], ["test_style_loss"],
        "style_loss, two layers"),
    "last_layer_only": (  # one layer's loss returned instead of the sum over layers
        "style_loss", [(STYLE, STYLE.replace("total = total + ", "total = "))], ["test_style_loss"],
        "style_loss, two layers"),
    "alias_gram": (  # the course's own Gram matrix by a computed name
        "gram_matrix", [("### BEGIN SOLUTION", "import importlib\n    texture = importlib.import_module("
                         "'karpa_lab.models.' + 'texture')\n    return getattr(texture, 'gram_' + 'matrix')(features)\n"
                         "    ### BEGIN SOLUTION")],
        ["test_gram_shape", "test_gram_values", "test_gram_gradient", "test_style_loss", "test_style_shift"],
        "karpa_lab.models.texture.gram_matrix, which this lab asks"),
}


def grade_variants(tmp_path, lab: str, variants: dict) -> Path:
    """Grade the variants in one run; assert each score and report line. Returns the course folder."""
    results, course = grade_edits(tmp_path, lab, {s: (cell, edits) for s, (cell, edits, _, _) in variants.items()},
                                  timeout=60)
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
    return course


def test_lab01_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "01_lstm_cell", LSTM)


def test_lab02_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "02_gan_step", GAN)


def test_lab03_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "03_self_attention", ATTENTION)


def test_lab04_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "04_nas_evolution", NAS)


def test_lab05_wrong_solutions_lose_their_part(tmp_path, sandbox):
    course = grade_variants(tmp_path, "05_conv_layer", CONV)
    for student, hint in [("flipped_kernel", "the kernel is flipped"), ("mean_bias", "the bias gradient is a mean")]:
        graded = course / "autograded" / student / "05_conv_layer" / "05_conv_layer.ipynb"
        assert hint in graded.read_text(encoding="utf-8"), f"{student}'s feedback names the mistake"


def test_lab06_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "06_beam_search", BEAM)


def test_lab08_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "08_distillation", DISTILL)


def test_lab09_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "09_gram_style", GRAM_STYLE)


def test_lab07_wrong_solutions_lose_their_part(tmp_path, sandbox):
    grade_variants(tmp_path, "07_policy_gradient", POLICY)
