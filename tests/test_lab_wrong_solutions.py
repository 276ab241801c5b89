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
NEIGHBOUR_KEYS = ("(*widths[:i], w, *widths[i + 1:], activation)", "(*widths, a)",
                  "(*widths[:i], w, *widths[i:], activation)", "(*widths[:i], *widths[i + 1:], activation)")
NAS = {
    "insert_after_only": (  # a layer added after an existing one only, as the course's mutation does: never first
        "neighbours", [("for i in range(len(widths) + 1):", "for i in range(1, len(widths) + 1):")],
        ["test_neighbours"], "missing ['32-16:relu']"),
    "repeats_kept": (  # every edit listed, the two ways to the same genome included: the search evaluates one twice
        "neighbours", [("found = {}", "found = []")] + [(f"found.setdefault({key})", f"found.append({key})")
                                                        for key in NEIGHBOUR_KEYS],
        ["test_neighbours", "test_search_budget", "test_beats_random"],
        "not neighbours or repeated ['16-16:relu', '16-16:relu'"),
    "depths_as_a_range": (  # a layer added while the depth stays under the largest: wrong where depths have a gap
        "neighbours", [("if len(widths) + 1 in space.depths:", "if len(widths) < max(space.depths):")],
        ["test_neighbours"], "test_neighbours: "),
    "in_list_order": (  # the neighbours evaluated in the order they were listed
        "improve", [("    rng.shuffle(order)\n", "")], ["test_improve_order"], "shuffle the neighbours"),
    "ties_move": (  # a neighbour as good as the current genome taken
        "improve", [("if value > genome_score:", "if value >= genome_score:")], ["test_improve_rules"],
        "strictly higher (>)"),
    "sampled_with_replacement": (  # a random neighbour drawn each time: some twice, some never
        "improve", [("for neighbour in order[:budget]:",
                     "for neighbour in [rng.choice(order) for _ in order][:budget]:")],
        ["test_improve_rules", "test_search_budget", "test_beats_random"], "a second time as a neighbour"),
    "best_improvement": (  # the whole neighbourhood evaluated, then the best taken
        "improve", [("evaluated = []", "evaluated, best = [], None"),
                    ("return evaluated, (neighbour, value)", "genome_score, best = value, (neighbour, value)"),
                    ("return evaluated, None", "return evaluated, best")],
        ["test_improve_rules", "test_search_budget", "test_beats_random"], "First improvement"),
    "no_restart": (  # the search ends at its first local optimum
        "local_search", [("            if better is None:\n                break", "            if better is None:\n"
                          "                return trace")], ["test_search_budget"], "evaluations for a budget of"),
    "evaluated_twice": (  # the start scored once for the current genome and again for the trace
        "local_search", [("trace.add(genome, value)", "trace.add(genome, score(genome))")],
        ["test_search_budget", "test_beats_random"], "score was called"),
    "alias_space_mutate": (  # the course's own mutation by a computed name: every part that uses it loses too
        "neighbours", [("widths, activation = list(genome.widths), genome.activation\n",
                        'draw = getattr(space, "mut" + "ate")\n    '
                        "return list(dict.fromkeys(draw(genome, random.Random(i)) for i in range(500)))\n")],
        ["test_neighbours", "test_improve_rules", "test_improve_order", "test_search_budget", "test_beats_random"],
        "Space.mutate, which this lab asks"),
}


CONV_KERNEL = ('weight[:, :, u, v])\n    return', 'weight.flip(2, 3)[:, :, u, v])\n    return')
CONV_PAD = "xp = x[:, :, rows][:, :, :, cols]\n    h_out"
CONV_FOLD = "grad_x = torch.zeros_like(x).index_add_(3, cols, grad_rows)"


def pasted(module: str, name: str, imports: str) -> str:
    """The source of one of the course's functions, as a student would paste it into a cell (with the imports
    of its helpers): the grader cannot tell it from the student's own code, so only its values can lose it points."""
    import importlib
    import inspect

    return f"{imports}\n\n\n{inspect.getsource(getattr(importlib.import_module(module), name))}\n\n"


CONV = {
    "flipped_kernel": (  # the textbook convolution flips the kernel; F.conv2d (a cross-correlation) does not
        "circular_conv2d", [CONV_KERNEL], ["test_forward_values"],
        "circular_conv2d does not match F.conv2d with circular padding"),
    "zero_padding": (  # zeros in the padding, as in an ordinary layer: the border forgets the opposite side
        "circular_conv2d", [(CONV_PAD, CONV_PAD.replace("x[:, :, rows][:, :, :, cols]", "F.pad(x, (pw, pw, ph, ph))"))],
        ["test_forward_shift", "test_forward_values"], "zeros in the padding break it at the border"),
    "no_padding": (  # right for padding 0, the wrong size otherwise
        "circular_conv2d", [(CONV_PAD, CONV_PAD.replace("x[:, :, rows][:, :, :, cols]", "x"))],
        ["test_forward_shift", "test_forward_values"], "stride=2, padding=1: the output is"),
    "flipped_grad_x": (  # half-remembering that "the gradient is a convolution with the flipped kernel"
        "circular_conv2d_backward", [('torch.einsum("bohw,oc->bchw", grad_out, weight[:, :, u, v])',
                                      'torch.einsum("bohw,oc->bchw", grad_out, weight.flip(2, 3)[:, :, u, v])')],
        ["test_grad_input"], "grad_x does not match autograd"),
    "cut_off_padding": (  # the padding's gradient thrown away, as a zero-padded layer does
        "circular_conv2d_backward", [(CONV_FOLD, "grad_x = grad_xp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]")],
        ["test_grad_input"], "grad_x does not match autograd"),
    "stride_blind_weight": (  # dL/dweight read from stride-1 windows whatever the stride
        "circular_conv2d_backward", [("grad_out, xp[:, :, r, c])", "grad_out, xp[:, :, u:u + h_out, v:v + w_out])")],
        ["test_grad_params"], "grad_weight does not match autograd"),
    "mean_bias": (
        "circular_conv2d_backward", [("grad_out.sum(dim=(0, 2, 3))", "grad_out.mean(dim=(0, 2, 3))")],
        ["test_grad_params"], "grad_bias does not match autograd"),
    "pasted_course_forward": (  # the course's conv2d_im2col pasted into the cell: an ordinary, zero-padded layer
        "circular_conv2d", [("def circular_conv2d(", pasted("karpa_lab.models.conv", "conv2d_im2col",
                                                            "from karpa_lab.models.conv import ConvGeometry, _check")
                             + "def circular_conv2d("),
                            ("### BEGIN SOLUTION", "return conv2d_im2col(x, weight, bias, stride, padding)\n"
                                                   "    ### BEGIN SOLUTION")],
        ["test_forward_shift", "test_forward_values"], "zeros in the padding break it at the border"),
    "pasted_course_backward": (  # and the course's conv2d_backward: its gradients are the zero-padded layer's
        "circular_conv2d_backward", [("def circular_conv2d_backward(", pasted(
            "karpa_lab.models.conv", "conv2d_backward", "from karpa_lab.models.conv import ConvGeometry, _check")
            + "def circular_conv2d_backward("),
            ("### BEGIN SOLUTION", "return conv2d_backward(x, weight, grad_out, stride, padding)\n"
                                   "    ### BEGIN SOLUTION")],
        ["test_grad_input", "test_grad_params"], "grad_x does not match autograd"),
    "alias_conv": (  # the library's convolution by a computed name
        "circular_conv2d", [("### BEGIN SOLUTION", "xp = F.pad(x, (padding, padding) * 2, mode='circular')\n"
                             "    return getattr(F, 'conv' + '2d')(xp, weight, bias, stride)\n    ### BEGIN SOLUTION")],
        ["test_forward_shift", "test_forward_values"], "called conv2d, which this lab asks you to write yourself"),
    "switched_off": (  # the same, with torch function modes (the grader's watch among them) switched off
        "circular_conv2d", [("### BEGIN SOLUTION", "with getattr(torch._C, 'DisableTorch' + 'Function')():\n"
                             "        xp = F.pad(x, (padding, padding) * 2, mode='circular')\n"
                             "        return getattr(F, 'conv' + '2d')(xp, weight, bias, stride)\n"
                             "    ### BEGIN SOLUTION")],
        ["test_forward_shift", "test_forward_values"],
        "torch._C.DisableTorchFunction (switched off the grader's watch)"),
    "autograd": (  # the gradients from autograd through the student's own forward pass, names hidden
        "circular_conv2d_backward", [("### BEGIN SOLUTION",
                                      "x, weight = x.detach().requires_grad_(), weight.detach().requires_grad_()\n"
                                      "    b = torch.zeros(weight.shape[0], dtype=x.dtype, requires_grad=True)\n"
                                      "    y = circular_conv2d(x, weight, b, stride, padding)\n"
                                      "    getattr(y, 'back' + 'ward')(grad_out)\n"
                                      "    return tuple(getattr(t, 'gr' + 'ad') for t in (x, weight, b))\n"
                                      "    ### BEGIN SOLUTION")],
        ["test_grad_input", "test_grad_params"], "the notebook's functions called backward"),
}

BEAM_LIVE = "live = sorted((c for c in candidates if c[0][-1] != EOS), key=lambda item: -item[1])[:beam]"
BEAM_LP = "return seq, logprob / ((5 + len(seq)) / 6) ** alpha"
SCORE_LP = "return score / ((5 + len(tokens)) / 6) ** alpha"
BEAM = {
    "last_step_sort": (  # live sequences ranked by the last token's log-probability, not the whole sequence's
        "beam_search", [(BEAM_LIVE, BEAM_LIVE.replace("key=lambda item: -item[1]", "key=lambda item: -float(logp["
                                                      "t, item[0][-2] if len(item[0]) > 1 else EOS, item[0][-1]])"))],
        ["test_beam_reference"], "a hidden test failed"),
    "finished_take_slots": (  # the k best of all candidates kept, finished ones among them: the beam thins out
        "beam_search", [("finished += [finish(*c) for c in candidates if c[0][-1] == EOS]\n"
                         "        live = sorted((c for c in candidates if c[0][-1] != EOS), key=lambda item: -item[1])"
                         "[:beam]",
                         "kept = sorted(candidates, key=lambda item: -item[1])[:beam]\n"
                         "        finished += [finish(*c) for c in kept if c[0][-1] == EOS]\n"
                         "        live = [c for c in kept if c[0][-1] != EOS]")],
        ["test_beam_one", "test_beam_reference"], "beam 1, alpha 0.8, model 1: sequence 0 is"),
    "drops_full_length": (  # the sequences that reach the last step never counted as finished
        "beam_search", [("    finished += [finish(*c) for c in live]\n", "")],
        ["test_beam_one", "test_beam_reference", "test_beam_exhaustive"], "beam 1, alpha 0.8, model 0: sequence 0 is"),
    "unpenalised_beam": (  # the finished sequences ranked and scored by log P alone, as the course's beam search does
        "beam_search", [(BEAM_LP, "return seq, logprob")],
        ["test_beam_one", "test_beam_reference", "test_beam_exhaustive"], "beam 1, alpha 0.8, model 0:"),
    "sums_probabilities": (  # probabilities added up instead of log-probabilities
        "sequence_score", [("score += float(logp[t, last, token])", "score += float(logp[t, last, token].exp())")],
        ["test_score"], "sequence_score(logp, [2, 0], alpha=1.0) ="),
    "unpenalised_score": (  # the plain log-probability
        "sequence_score", [(SCORE_LP, "return score")], ["test_score"], "sequence_score(logp, [2, 0], alpha=1.0) ="),
    "length_to_alpha": (  # length normalisation |Y|^alpha instead of GNMT's ((5 + |Y|) / 6)^alpha
        "sequence_score", [(SCORE_LP, "return score / len(tokens) ** alpha")], ["test_score"],
        "sequence_score(logp, [2, 0], alpha=1.0) ="),
    "length_without_eos": (  # |Y| counted without the EOS
        "sequence_score", [(SCORE_LP, "return score / ((5 + len(tokens) - (tokens[-1] == EOS)) / 6) ** alpha")],
        ["test_score"], "sequence_score(logp, [2, 0], alpha=1.0) ="),
}

KL_TERM = "return T**2 * (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean()"
DKD_SUM = ("return (alpha * tckd(student_logits, teacher_logits, labels, T)\n"
           "            + beta * nckd(student_logits, teacher_logits, labels, T))")
DKD_LOST = ["test_dkd_loss", "test_dkd_gradient"]
DISTILL = {
    "log_of_one_minus": (  # log(1 - p_t) from the probability: -inf once p_t rounds to 1 (a confident teacher)
        "tckd", [("return torch.stack([z[target] - everything, rest - everything], dim=-1)",
                  "return torch.stack([z[target] - everything, torch.log(1 - torch.exp(z[target] - everything))], "
                  "dim=-1)")],
        ["test_tckd"], "tckd with a confident teacher is nan"),
    "reversed_kl": (  # KL(student || teacher): the mode-seeking direction
        "tckd", [(KL_TERM, "return T**2 * (log_s.exp() * (log_s - log_t)).sum(dim=-1).mean()")],
        ["test_tckd", "test_nckd", *DKD_LOST], "tckd at T = 1.0 is off by"),
    "not_renormalised": (  # the non-target probabilities p_i used as they are, without dividing by 1 - p_t
        "nckd", [("return z - torch.logsumexp(z, dim=-1, keepdim=True)",
                  "return z - torch.logsumexp(logits / T, dim=-1, keepdim=True)")],
        ["test_nckd", *DKD_LOST], "nckd at T = 1.0 is off by"),
    "target_not_removed": (  # the KL over all the classes: classic KD's term, not the non-target one
        "nckd", [("z = (logits / T)[~F.one_hot(labels, logits.shape[-1]).bool()].view(len(logits), -1)",
                  "z = logits / T")],
        ["test_nckd", *DKD_LOST], "nckd at T = 1.0 is off by"),
    "no_t_squared": (
        "nckd", [(KL_TERM, KL_TERM.replace("T**2 * ", ""))], ["test_nckd", *DKD_LOST], "nckd at T = 3.0 is off by"),
    "weights_swapped": (
        "dkd_loss", [(DKD_SUM, DKD_SUM.replace("alpha *", "BETA *").replace("beta *", "alpha *")
                      .replace("BETA *", "beta *"))],
        DKD_LOST, "dkd_loss at T = 4.0, alpha = 1.0, beta = 8.0 is off by"),
    "alias_softmax": (  # the library's softmax by a computed name: the decomposition check calls tckd too
        "tckd", [("### BEGIN SOLUTION", "q = getattr(torch, 'soft' + 'max')(student_logits / T, dim=-1)\n"
                  "    ### BEGIN SOLUTION")],
        ["test_tckd", "test_nckd", *DKD_LOST], "the notebook's functions called softmax"),
}

GAE_STEP = "running = delta + gamma * lam * keep * running"
AC_LOSS = "return -(advantages * logp).mean() + value_coef * (values - targets).pow(2).mean()"
POLICY = {
    "not_reversed": (  # the recursion run forwards: each step gets what came before it (on the corridor, whose
        # only reward is the last step's, the policy and its critic still learn: Part 1's tests catch it)
        "gae", [("for t in range(len(rewards) - 1, -1, -1):", "for t in range(len(rewards)):")],
        ["test_gae_values", "test_gae_reset"], "gae, gamma 0.9, lambda 0.5 is off by"),
    "no_reset": (  # the sum of TD errors never reset: one episode's advantage takes in the next one's (on the
        # corridor the advantages then mix episodes, and the trained policy almost never wins)
        "gae", [(GAE_STEP, GAE_STEP.replace(" * keep", ""))], ["test_gae_reset", "test_training"],
        "gae over two episodes, lambda 0.5 is off by"),
    "bootstraps_across": (  # the next episode's first value used as the value after an episode's end
        "gae", [("delta = rewards[t] + gamma * keep * next_value - values[t]",
                 "delta = rewards[t] + gamma * next_value - values[t]")], ["test_gae_reset"],
        "gae over two episodes, lambda 0.5 is off by"),
    "lambda_without_gamma": (  # the TD errors discounted by lambda alone
        "gae", [(GAE_STEP, GAE_STEP.replace("gamma * lam", "lam"))], ["test_gae_values", "test_gae_reset"],
        "gae, gamma 0.9, lambda 0.5 is off by"),
    "target_not_detached": (  # the critic's target left attached: V - (A + V) = -A has no gradient in V
        "actor_critic_loss", [("targets = (advantages + values).detach()", "targets = advantages + values")],
        ["test_loss_gradient", "test_training"], "d loss / d values is off by"),
    "advantage_not_detached": (  # the actor's term pushes the critic through the advantage
        "actor_critic_loss", [("    advantages = advantages.detach()\n", "")], ["test_loss_gradient"],
        "d loss / d values is off by"),
    "summed": (  # sums over the steps instead of means: the step size grows with the batch
        "actor_critic_loss", [(AC_LOSS, AC_LOSS.replace(".mean()", ".sum()"))],
        ["test_loss_values", "test_loss_gradient", "test_training"], "actor_critic_loss, c = 0.5 is off by"),
    "no_critic_term": (  # the course's REINFORCE loss on the advantages: the critic never learns
        "actor_critic_loss", [(AC_LOSS, "return -(advantages * logp).mean()")],
        ["test_loss_values", "test_loss_gradient", "test_training"], "the critic should have learned"),
    "alias_course_returns": (  # the course's returns by a computed name, minus the values (GAE at lambda = 1)
        "gae", [("### BEGIN SOLUTION", "import importlib\n    rl = importlib.import_module('karpa_lab.' + 'rl')\n"
                 "    return getattr(rl, 'discounted_' + 'returns')(rewards, dones, gamma).double() - values\n"
                 "    ### BEGIN SOLUTION")],
        ["test_gae_values", "test_gae_reset", "test_training"], "karpa_lab.rl.discounted_returns"),
}

GRAM = "return sums / weights.sum(dim=2)[:, :, None, None]"
GRAM_SUMS = 'sums = torch.einsum("brm,bim,bjm->brij", weights, flat, flat)'
STYLE = "total = total + ((gx - gt).pow(2).sum(dim=(0, 2, 3)) / gt.pow(2).sum(dim=(0, 2, 3))).sum()"
GRAM_LOST = ["test_gram_values", "test_gram_gradient", "test_style_loss"]
GRAM_STYLE = {
    "unnormalised": (  # F diag(w) F^T without dividing by the mask's sum: a region's style depends on its size
        "guided_gram", [(GRAM, "return sums")], [*GRAM_LOST, "test_style_shift"], "guided_gram, two regions is off by"),
    "divided_by_positions": (  # the plain Gram's 1/M kept: a small region's statistics look weak
        "guided_gram", [(GRAM, "return sums / flat.shape[2]")], GRAM_LOST, "guided_gram, two regions is off by"),
    "mask_squared": (  # the Gram of the masked features F * w: the mask counted twice, wrong for soft masks
        "guided_gram", [(GRAM_SUMS, GRAM_SUMS.replace('"brm,bim,bjm->brij", weights,', '"brm,brm,bim,bjm->brij", '
                                                      'weights, weights,'))],
        GRAM_LOST, "d/dF of sum(W * G) is off by"),
    "positions_gram": (  # a matrix over positions, (B, R, M, M)
        "guided_gram", [(GRAM_SUMS, GRAM_SUMS.replace("brm,bim,bjm->brij", "brm,bim,bin->brmn"))],
        ["test_gram_shape", *GRAM_LOST, "test_style_shift"], "the guided Gram matrix is (B, R, C, C)"),
    "masks_ignored": (  # the plain Gram matrix of the whole image, once per region
        "guided_gram", [(GRAM_SUMS, 'sums = torch.einsum("brm,bim,bjm->brij", torch.ones_like(weights), flat, flat)')],
        [*GRAM_LOST, "test_style_shift"], "guided_gram, two regions is off by"),
    "regions_pooled": (  # one relative error per layer over all the regions: a small region hardly counts
        "style_loss", [(STYLE, "total = total + (gx - gt).pow(2).sum() / gt.pow(2).sum()")], ["test_style_loss"],
        "style_loss, two layers, two regions is off by"),
    "absolute": (  # the squared distance without dividing by the target's size
        "style_loss", [(STYLE, "total = total + (gx - gt).pow(2).sum()")], ["test_style_loss"],
        "style_loss, two layers, two regions is off by"),
    "last_layer_only": (  # one layer's loss returned instead of the sum over layers
        "style_loss", [(STYLE, STYLE.replace("total = total + ", "total = "))], ["test_style_loss"],
        "style_loss, two layers, two regions is off by"),
    "alias_gram": (  # the course's own Gram matrix by a computed name (then masked): every test that reaches it
        "guided_gram", [("### BEGIN SOLUTION", "import importlib\n    texture = importlib.import_module("
                         "'karpa_lab.models.' + 'texture')\n    gram = getattr(texture, 'gram_' + 'matrix')\n"
                         "    return torch.stack([gram(features * m[:, None]) for m in masks.unbind(1)], 1)\n"
                         "    ### BEGIN SOLUTION")],
        ["test_gram_shape", *GRAM_LOST, "test_style_shift"],
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
    for student, hint in [("flipped_kernel", "the kernel is flipped"), ("mean_bias", "the bias gradient is a mean"),
                          ("zero_padding", "x is padded with zeros"),
                          ("cut_off_padding", "must be added onto the pixel it copies")]:
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
