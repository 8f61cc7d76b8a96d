import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForTokenClassification

from ttc_runtime.compute import inference_flops
from ttc_runtime.models import (
    ModelLoadError,
    TinyLMConfig,
    build_embedded_tokenizer,
    build_tiny_causal_lm,
    flop_params,
    load_causal_lm,
    load_tokenizer,
)
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.scoring import (
    CausalLMPRM,
    CausalPRMFormat,
    MarginPRMForTokenClassification,
    OutcomeScorer,
    ProposerMarginScorer,
    StepScorer,
    StepSeparatorFormat,
    TokenClassificationPRM,
    VerifierConfig,
    check_verifier,
    encode_steps,
    load_verifier,
)
from ttc_runtime.scoring.margin import (
    EVIDENCE_SCALE,
    MARGIN_FEATURES,
    evidence_features,
    margin_features,
    token_margins,
)

from .conftest import biased_model, save_math_shepherd_style_prm

QUESTIONS = ["Evaluate left to right:\n3+4*2", "Evaluate left to right:\n9-1"]
SOLUTIONS = [["7*2", "14", "\\boxed{14}"], ["8", "\\boxed{8}"]]


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("prm")
    tokenizer = build_embedded_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForTokenClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_encode_steps_marks_the_last_token_of_each_step():
    tokenizer = build_embedded_tokenizer()
    ids, positions = encode_steps(tokenizer, "Q\n\n", ["12+3", "15"])
    pieces = [tokenizer.decode([i]) for i in ids]
    assert pieces == ["Q", "\n", "\n", "12", "+", "3", "\n", "\n", "15", "\n", "\n"]
    assert positions == [7, 10]


def test_scores_every_step_in_batches(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    assert isinstance(prm, StepScorer)
    out = prm.score(QUESTIONS, SOLUTIONS)
    assert [len(s) for s in out.step_scores] == [3, 2]
    assert all(0.0 < x < 1.0 for row in out.step_scores for x in row)
    tokens = sum(len(encode_steps(prm.tokenizer, prm.prompt.format(q), s)[0]) for q, s in zip(QUESTIONS, SOLUTIONS))
    assert out.usage.prompt_tokens == tokens and out.usage.generated_tokens == 0
    assert out.usage.flops == inference_flops(prm.flop_params, tokens)
    one_by_one = TokenClassificationPRM(prm.model, prm.tokenizer, batch_size=1).score(QUESTIONS, SOLUTIONS)
    for a, b in zip(out.step_scores, one_by_one.step_scores):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_step_score_depends_only_on_the_prefix(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    full = prm.score(QUESTIONS[:1], SOLUTIONS[:1]).step_scores[0]
    prefix = prm.score(QUESTIONS[:1], [SOLUTIONS[0][:2]]).step_scores[0]
    assert prefix == pytest.approx(full[:2], abs=1e-5)


def test_directory_without_a_token_classification_head(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="expected a token-classification model with one label"):
        TokenClassificationPRM.from_pretrained(tiny_model_dir)
    with pytest.raises(ModelLoadError, match="does not exist"):
        TokenClassificationPRM.from_pretrained(tmp_path / "absent")


def test_mismatched_inputs(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    with pytest.raises(ValueError, match="1 solutions for 2 questions"):
        prm.score(QUESTIONS, SOLUTIONS[:1])


TAGGED = CausalPRMFormat(step_tag=" #", step_separator="\n", good_token="+", bad_token="-")


@pytest.fixture(scope="module")
def causal_prm_dir(tmp_path_factory):
    """A tiny random causal LM saved with the embedded tokenizer: the shape of a Math-Shepherd PRM."""
    path = tmp_path_factory.mktemp("causal-prm")
    tokenizer = build_embedded_tokenizer()
    build_tiny_causal_lm(
        TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_causal_prm_reads_good_against_bad_at_each_step_tag(causal_prm_dir):
    prm = CausalLMPRM.from_pretrained(causal_prm_dir, layout=TAGGED)
    assert isinstance(prm, StepScorer)
    ids, positions = prm.encode(prm.prompt.format(QUESTIONS[0]), SOLUTIONS[0])
    assert [prm.tokenizer.decode([ids[p]]) for p in positions] == ["#"] * 3
    assert prm.tokenizer.decode(ids[positions[0] + 1 :]) == "\n14 #\n\\boxed{14} #"
    out = prm.score(QUESTIONS, SOLUTIONS)
    good, bad = (prm.tokenizer.convert_tokens_to_ids(t) for t in "+-")
    with torch.no_grad():
        logits = prm.model(input_ids=torch.tensor([ids])).logits[0]
    expected = torch.softmax(logits[positions][:, [good, bad]], dim=-1)[:, 0]
    assert out.step_scores[0] == pytest.approx(expected.tolist(), abs=1e-5)
    one_by_one = CausalLMPRM(prm.model, prm.tokenizer, prm.prompt, TAGGED, batch_size=1).score(QUESTIONS, SOLUTIONS)
    for a, b in zip(out.step_scores, one_by_one.step_scores):
        assert a == pytest.approx(b, abs=1e-5)
    assert out.usage.flops == inference_flops(prm.flop_params, out.usage.prompt_tokens)


def test_a_sentencepiece_style_prm_reads_the_text_as_one_encoding_as_published(tmp_path):
    """Math-Shepherd's recipe: encode "question step ки\nstep ки" whole, read softmax(+, -) at every
    tag token. A Mistral-style tokenizer starts each text it encodes with a word boundary, so
    encoding the steps apart would add tokens the published PRM never saw."""
    question, steps = QUESTIONS[0], SOLUTIONS[0]
    text = f"{question} " + "\n".join(f"{step} ки" for step in steps)
    save_math_shepherd_style_prm(tmp_path, [text, "+ -"] * 8)
    prm = CausalLMPRM.from_pretrained(tmp_path)
    ids, positions = prm.encode(prm.prompt.format(question), steps)
    assert ids == prm.tokenizer(text)["input_ids"] and ids[0] == prm.tokenizer.bos_token_id
    tags = [i for i, token in enumerate(ids) if token == prm.tokenizer.convert_tokens_to_ids("▁ки")]
    assert positions == tags and len(tags) == len(steps)
    good, bad = prm.tokenizer.convert_tokens_to_ids(["▁+", "▁-"])
    with torch.no_grad():
        logits = prm.model(input_ids=torch.tensor([ids])).logits[0]
    expected = torch.softmax(logits[positions][:, [good, bad]], dim=-1)[:, 0]
    assert prm.score([question], [steps]).step_scores[0] == pytest.approx(expected.tolist(), abs=1e-5)


def test_causal_prm_rejects_ambiguous_verdict_tokens_and_other_heads(causal_prm_dir, prm_dir):
    with pytest.raises(ValueError, match=r"good_token '\+\+' is 2 tokens .* set good_token_id"):
        CausalLMPRM.from_pretrained(causal_prm_dir, layout=TAGGED.model_copy(update={"good_token": "++"}))
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        CausalLMPRM.from_pretrained(causal_prm_dir, layout=TAGGED.model_copy(update={"bad_token_id": 10**6}))
    with pytest.raises(ModelLoadError, match="expected a causal LM"):
        CausalLMPRM.from_pretrained(prm_dir)


def test_the_pre_run_check_finds_what_loading_a_causal_prm_would_reject(causal_prm_dir, prm_dir):
    check_verifier(VerifierConfig(kind="causal_lm", causal_lm=TAGGED), causal_prm_dir)
    cases = [
        ({"good_token": "++"}, r"good_token '\+\+' is 2 tokens .* set good_token_id"),
        ({"bad_token_id": 10**6}, "outside the model's vocabulary"),
        ({"bad_token": "+"}, "the same token"),
    ]
    for change, message in cases:
        config = VerifierConfig(kind="causal_lm", causal_lm=TAGGED.model_copy(update=change))
        with pytest.raises(ValueError, match=message):
            check_verifier(config, causal_prm_dir)
    with pytest.raises(ModelLoadError, match="expected a causal LM"):
        check_verifier(VerifierConfig(kind="causal_lm"), prm_dir)


def test_outcome_scorer_keeps_the_last_step_score_only(prm_dir):
    prm = TokenClassificationPRM.from_pretrained(prm_dir)
    steps = prm.score(QUESTIONS, SOLUTIONS)
    outcome = OutcomeScorer(prm).score(QUESTIONS, SOLUTIONS)
    assert outcome.step_scores == [s[-1:] for s in steps.step_scores]
    assert outcome.usage == steps.usage


def test_load_verifier_builds_the_configured_scorer(prm_dir, causal_prm_dir):
    prompt = PromptConfig()
    scorer = load_verifier(VerifierConfig(), prm_dir, prompt)
    assert isinstance(scorer, TokenClassificationPRM) and scorer.prompt == prompt
    causal = load_verifier(VerifierConfig(kind="causal_lm", causal_lm=TAGGED, outcome=True), causal_prm_dir, prompt)
    assert isinstance(causal, OutcomeScorer) and causal.scorer.prompt.template == "{question} "
    with pytest.raises(ModelLoadError, match="expected a token-classification model"):
        load_verifier(VerifierConfig(), causal_prm_dir, prompt)


def test_verifier_config_dump_leaves_default_chat_sections_out():
    # Stage fingerprints hash the verifier's dump: runs configured before the chat layouts keep theirs.
    assert set(VerifierConfig().model_dump()) == {"kind", "prompt", "causal_lm", "outcome", "aggregation", "batch_size"}
    trusted = VerifierConfig(kind="step_separator", step_separator=StepSeparatorFormat(trust_remote_code=True))
    dump = trusted.model_dump()
    assert dump["step_separator"]["trust_remote_code"] is True and "chat_turn" not in dump
    assert VerifierConfig.model_validate_json(trusted.model_dump_json()) == trusted


def test_margin_scorer_is_one_until_a_token_against_the_models_preference():
    model, tokenizer = biased_model({"1": 5.0, "7": 2.0})  # always prefers "1"; "7" is 3 nats behind it
    scorer = ProposerMarginScorer(model, tokenizer)
    out = scorer.score(["9-8", "9-8", "9-8"], [["1", "1"], ["1", "7", "1"], ["7 ", "1"]])
    # Blank tokens (the step separators, the trailing space) never count; the prompt never counts.
    assert out.step_scores[0] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert out.step_scores[1] == pytest.approx([1.0, math.exp(-3.0), math.exp(-3.0)], rel=1e-4)
    assert out.step_scores[2] == pytest.approx([math.exp(-3.0), math.exp(-3.0)], rel=1e-4)
    assert out.usage.flops == inference_flops(scorer.flop_params, out.usage.prompt_tokens)


def test_margin_scorer_matches_a_direct_computation(tiny_model_dir):
    scorer = ProposerMarginScorer.from_pretrained(tiny_model_dir, batch_size=2)
    out = scorer.score(QUESTIONS, SOLUTIONS)
    for question, steps, scores in zip(QUESTIONS, SOLUTIONS, out.step_scores):
        prompt = scorer.prompt.format(question)
        ids, positions = encode_steps(scorer.tokenizer, prompt, steps)
        start = len(scorer.tokenizer(prompt)["input_ids"])
        with torch.no_grad():
            log_probs = torch.log_softmax(scorer.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        running, expected = 0.0, []
        for t in range(start, len(ids)):
            if scorer.tokenizer.decode([ids[t]]).strip():
                running = min(running, (log_probs[t - 1, ids[t]] - log_probs[t - 1].max()).item())
            if t in positions:
                expected.append(math.exp(running))
        assert scores == pytest.approx(expected, rel=1e-4)


def test_margin_features_by_hand():
    # Vocabulary of 3; token 2 is blank. Row: prompt token 0, then solution tokens 1, 2 (blank), 0.
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]]]))
    input_ids = torch.tensor([[0, 1, 2, 0]])
    blank = torch.tensor([False, False, True])
    margin, chosen, counted = token_margins(logits, input_ids, torch.ones_like(input_ids), torch.tensor([1]), blank)
    assert counted.tolist() == [[True, False, True]]
    assert margin[0].tolist() == pytest.approx([math.log(0.5), 0.0, math.log(0.125)])
    assert chosen[0].tolist() == pytest.approx([math.log(0.25), 0.0, math.log(0.1)])
    features = margin_features(margin, chosen, counted)[0]
    assert features.shape == (4, len(MARGIN_FEATURES))
    assert features[0].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]  # nothing written yet
    # After token 1: one token, margin log 0.5 (not below the slip threshold log 0.5).
    one = [0.5, math.log(0.5) / 10, 0.25, 0.5, 0.0, math.log(2)]
    assert features[1].tolist() == pytest.approx(one, abs=1e-6)
    assert features[2].tolist() == pytest.approx(one, abs=1e-6)  # the blank changes nothing
    mean = math.exp((math.log(0.5) + math.log(0.125)) / 2)
    two = [0.125, math.log(0.125) / 10, 0.1, mean, math.log(2), math.log(3)]
    assert features[3].tolist() == pytest.approx(two, abs=1e-6)
    # Margins below the floor read as the floor (-10 nats).
    floor = margin_features(torch.tensor([[-30.0]]), torch.tensor([[-40.0]]), torch.tensor([[True]]))[0, 1]
    assert floor.tolist() == pytest.approx(
        [math.exp(-10), -1.0, math.exp(-10), math.exp(-30), math.log(2), math.log(2)]
    )


@pytest.fixture(scope="module")
def margin_prm_dir(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("margin-prm")
    tokenizer = load_tokenizer(tiny_model_dir)
    torch.manual_seed(0)
    model = MarginPRMForTokenClassification.from_proposer(load_causal_lm(tiny_model_dir), tokenizer, head_size=4)
    assert not any(p.requires_grad for p in model.proposer.parameters())
    assert all(p.requires_grad for p in [*model.head.parameters(), *model.linear.parameters()])
    with torch.no_grad():  # a head other than the initial one, so that both of its parts are checked
        for p in [*model.head.parameters(), *model.linear.parameters()]:
            p.normal_()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_margin_prm_loads_as_a_token_classification_prm_and_reads_the_margins(tiny_model_dir, margin_prm_dir):
    prm = TokenClassificationPRM.from_pretrained(margin_prm_dir, batch_size=1)
    proposer = load_causal_lm(tiny_model_dir)
    assert all(
        torch.equal(a, b) for a, b in zip(prm.model.proposer.state_dict().values(), proposer.state_dict().values())
    )
    head = sum(p.numel() for p in [*prm.model.head.parameters(), *prm.model.linear.parameters()])
    assert prm.flop_params == flop_params(proposer) + head
    out = prm.score(QUESTIONS, SOLUTIONS)
    margins = ProposerMarginScorer(proposer, prm.tokenizer).score(QUESTIONS, SOLUTIONS).step_scores
    for question, steps, scores, margin_scores in zip(QUESTIONS, SOLUTIONS, out.step_scores, margins):
        prompt = prm.prompt.format(question)
        ids, positions = encode_steps(prm.tokenizer, prompt, steps)
        ids = torch.tensor([ids])
        start = torch.tensor([len(prm.tokenizer(prompt)["input_ids"])])
        with torch.no_grad():
            parts = token_margins(proposer(input_ids=ids).logits, ids, torch.ones_like(ids), start, prm.model.blank)
            features = margin_features(*parts)[0, positions]
            expected = torch.sigmoid(prm.model.linear(features)[:, 0] + prm.model.head(features)[:, 0])
        assert scores == pytest.approx(expected.tolist(), rel=1e-4)
        assert features[:, 0].tolist() == pytest.approx(margin_scores, rel=1e-4)  # the untrained scorer's score


def test_token_evidence_is_summed_over_counted_tokens():
    evidence = torch.tensor([[0.5, -2.0, 3.0, 1.0, -1.0]])
    counted = torch.tensor([[True, True, False, True, True]])  # the 3.0 is a blank token: never counts
    features = evidence_features(evidence, counted)
    assert features.shape == (1, 6, 1) and features[0, :, 0].tolist() == [0.0, 0.5, -1.5, -1.5, -0.5, -1.5]
    # A score read at a blank token (a step's end) passes its gradient to every counted token
    # before it, not to the blank one nor to later ones.
    zero = torch.zeros(1, 5, requires_grad=True)
    evidence_features(zero, counted)[0, 3, 0].backward()  # position 3 reads tokens 1..3; token 3 is blank
    assert zero.grad[0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_a_margin_prm_with_token_evidence_reads_what_was_written(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    proposer = load_causal_lm(tiny_model_dir)
    model = MarginPRMForTokenClassification.from_proposer(proposer, tokenizer, head_size=4, token_evidence=True)
    assert model.evidence.weight.abs().sum() == 0 and model.evidence.weight.requires_grad
    prm = TokenClassificationPRM(model, tokenizer)
    before = prm.score(["Evaluate left to right:\n7-3"], [["4 < 5"]]).step_scores[0][0]
    assert model.linear.weight[0, len(MARGIN_FEATURES) :].tolist() == [-1.0]  # evidence in logit units
    with torch.no_grad():
        model.evidence.weight[tokenizer.convert_tokens_to_ids("<")] = 1.0
    after = prm.score(["Evaluate left to right:\n7-3"], [["4 < 5"]]).step_scores[0][0]
    # One "<" moves the step's logit by the feature's weight times its evidence, and a step without
    # one not at all (the head's non-linear part starts at zero).
    assert math.log(after / (1 - after)) == pytest.approx(math.log(before / (1 - before)) - EVIDENCE_SCALE, abs=1e-3)
    plain = prm.score(["Evaluate left to right:\n7-3"], [["4 = 4"]]).step_scores[0][0]
    with torch.no_grad():
        model.evidence.weight.zero_()
    assert prm.score(["Evaluate left to right:\n7-3"], [["4 = 4"]]).step_scores[0][0] == pytest.approx(plain)


@pytest.mark.parametrize("layout", ["embedded", "sentencepiece"])
def test_step_ends_are_the_first_tokens_that_spell_each_step(layout):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ttc_runtime.generation.base import Completion
    from ttc_runtime.scoring.margin import step_ends
    from ttc_runtime.tasks import split_steps

    text = "12+34 is 46.\n\n\n\nThen 46*2 = 92\n\nso \\boxed{92}"
    if layout == "embedded":
        tokenizer = build_embedded_tokenizer()  # its tokens decoded one by one spell the text
    else:  # a word-initial token decodes alone without its space: the step ends are decoded in full
        backend = Tokenizer(models.BPE(unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"], show_progress=False)
        backend.train_from_iterator([text] * 8, trainer)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    ends = step_ends(tokenizer, Completion(decoded, len(ids), "eos", tuple(ids)))
    assert len(ends) == len(split_steps(decoded)) == 3
    for end, step in zip(ends, split_steps(decoded)):
        reach = decoded.index(step) + len(step)
        assert len(tokenizer.decode(ids[:end], skip_special_tokens=True)) >= reach
        assert len(tokenizer.decode(ids[: end - 1], skip_special_tokens=True)) < reach
