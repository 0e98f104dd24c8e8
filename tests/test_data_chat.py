"""Chat and instruct data (hf_unlearn.data.chat / lm): chat-template masking, BOS exactly once, alternatives,
and every entry point that takes a dataset accepting the chat forms."""

import math

import pytest
import torch
from conftest import make_config, method_kind_matrix

from hf_unlearn import UnlearningTrainer
from hf_unlearn.data import IGNORE_INDEX, build_preparer
from hf_unlearn.tiny import TINY_CHAT_TEMPLATE, tiny_causal_lm, tiny_decoder, train_tokenizer

CORPUS = [
    "Where was Kalo Miren born? In Aldham.",
    "What is the job of Kalo Miren? A baker.",
    "You are a helpful assistant. I do not know.",
    "Who wrote it? Nobody knows. Tell me more.",
]


@pytest.fixture(scope="module")
def chat_tok():
    """A Llama-style tokenizer: adds BOS when asked for special tokens, with a chat template."""
    return train_tokenizer(CORPUS, vocab_size=320, add_bos=True, chat_template=TINY_CHAT_TEMPLATE)


def _prep(tok, model=None):
    model = model if model is not None else tiny_causal_lm(tok)
    return build_preparer(model, tok)[0]


def _labeled_text(tok, row, prefix=""):
    ids = [t for t in row[prefix + "labels"] if t != IGNORE_INDEX]
    return tok.decode(ids)


CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Where was Kalo Miren born?"},
    {"role": "assistant", "content": "In Aldham."},
    {"role": "user", "content": "What is the job of Kalo Miren?"},
    {"role": "assistant", "content": "A baker."},
]


def test_messages_put_the_loss_on_every_assistant_turn_and_nothing_else(chat_tok):
    (row,) = _prep(chat_tok)([{"messages": CONVERSATION}], "forget")
    assert row["input_ids"].count(chat_tok.bos_token_id) == 1 and row["input_ids"][0] == chat_tok.bos_token_id
    assert _labeled_text(chat_tok, row) == "In Aldham.[EOS]A baker.[EOS]"
    # the labels are the input tokens at the assistant positions, -100 everywhere else
    labeled = [i for i, t in enumerate(row["labels"]) if t != IGNORE_INDEX]
    assert all(row["labels"][i] == row["input_ids"][i] for i in labeled)
    prompt = chat_tok.decode(row["input_ids"][: labeled[0]])
    assert prompt.endswith("<|assistant|>") and "Where was Kalo Miren born?" in prompt


def test_conversational_prompt_completion_labels_only_the_completion(chat_tok):
    few_shot = CONVERSATION[:3] + [CONVERSATION[3]]  # a few-shot assistant turn inside the prompt
    data = [{"prompt": few_shot, "completion": [CONVERSATION[4]]}]
    (row,) = _prep(chat_tok)(data, "forget")
    assert _labeled_text(chat_tok, row) == "A baker.[EOS]"
    assert row["input_ids"].count(chat_tok.bos_token_id) == 1


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"messages": CONVERSATION, "alternative": "I do not know."}, "In Aldham.[EOS]I do not know.[EOS]"),
        (
            {"messages": CONVERSATION, "alternative": [{"role": "assistant", "content": "Nobody knows."}]},
            "In Aldham.[EOS]Nobody knows.[EOS]",
        ),
        (
            {"prompt": CONVERSATION[:4], "completion": [CONVERSATION[4]], "alternative": "I do not know."},
            "I do not know.[EOS]",
        ),
        (
            {"prompt": "Who wrote it?", "completion": " Nobody.", "alternative": " I do not know."},
            " I do not know.",
        ),
    ],
    ids=["messages-str", "messages-list", "conversational", "plain"],
)
def test_alternative_completions_work_in_every_form(chat_tok, row, expected):
    (out,) = _prep(chat_tok)([row], "forget")
    assert _labeled_text(chat_tok, out, "alt_").replace("[EOS]", "") == expected.replace("[EOS]", "")
    assert out["alt_input_ids"].count(chat_tok.bos_token_id) == 1


def test_plain_prompt_completion_and_text_get_exactly_one_bos_at_the_start(chat_tok):
    rows = _prep(chat_tok)(
        [{"prompt": "Where was Kalo Miren born?", "completion": " In Aldham."}], "forget"
    ) + _prep(chat_tok)([{"text": "Who wrote it? Nobody knows."}], "retain")
    for row in rows:
        assert row["input_ids"][0] == chat_tok.bos_token_id
        assert row["input_ids"].count(chat_tok.bos_token_id) == 1
        assert row["input_ids"][-1] == chat_tok.eos_token_id
    assert rows[0]["labels"][0] == IGNORE_INDEX  # the BOS belongs to the prompt
    assert _labeled_text(chat_tok, rows[0]) == " In Aldham.[EOS]"


def test_a_tokenizer_that_adds_no_bos_gets_none(qa):
    (row,) = _prep(qa.tokenizer)([{"prompt": "Where?", "completion": " Here."}], "forget")
    assert qa.tokenizer.bos_token_id not in row["input_ids"]


def test_chat_data_without_a_chat_template_or_with_bad_messages_is_rejected(qa, chat_tok):
    with pytest.raises(ValueError, match="no chat template"):
        _prep(qa.tokenizer)([{"messages": CONVERSATION}], "forget")
    with pytest.raises(ValueError, match="role', 'content'"):
        _prep(chat_tok)([{"messages": [{"role": "user", "content": 3}]}], "forget")
    with pytest.raises(ValueError, match="no assistant turn"):
        _prep(chat_tok)([{"messages": CONVERSATION[:2]}], "forget")


def _chat_task(tok):
    people = [
        ("Kalo Miren", "Aldham"),
        ("Ren Tosa", "Brisk"),
        ("Vidor Elqu", "Corvale"),
        ("Ban Zet", "Grent"),
    ]

    def conv(name, city):
        return {
            "messages": [
                {"role": "user", "content": f"Where was {name} born?"},
                {"role": "assistant", "content": f"In {city}."},
            ]
        }

    forget = [conv(*people[0]), conv(*people[1])]
    retain = [conv(n, c) for n, c in people[2:]] * 2
    return forget, retain


@pytest.mark.parametrize("method", ["grad_diff", "dr"])
def test_trainer_and_metrics_take_chat_data_on_a_tiny_llama(tmp_path, chat_tok, method):
    from hf_unlearn.metrics import (
        RelearnConfig,
        evaluate_unlearning,
        per_example_losses,
        relearning_convergence_delay,
    )

    forget, retain = _chat_task(chat_tok)
    model = tiny_decoder(chat_tok, "llama")
    original = tiny_decoder(chat_tok, "llama")
    trainer = UnlearningTrainer(
        model,
        make_config(tmp_path, method=method, max_steps=2, learning_rate=1e-2),
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=chat_tok,
    )
    trainer.train()
    losses = per_example_losses(model, forget, chat_tok)
    assert losses.shape == (2,) and all(math.isfinite(x) for x in losses)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=forget,
        retain_dataset=retain,
        test_dataset=retain[:2],
        processing_class=chat_tok,
    )
    assert math.isfinite(metrics["forget/loss"]) and 0 <= metrics["mia/auc"] <= 1
    result = relearning_convergence_delay(
        model,
        forget,
        original_model=original,
        processing_class=chat_tok,
        config=RelearnConfig(max_steps=2, progress_bar=False),
    )
    assert result.curve[0]["step"] == 0
    assert torch.isfinite(torch.tensor(result.curve[-1]["loss"]))


CHAT_ARCHITECTURES = ["llama", "qwen2", "mistral", "gemma2"]
# every registered method that runs on causal LMs, each on one of the families in turn (every family gets
# several methods, every method one family), full weights and LoRA
CHAT_MATRIX = [
    (method, CHAT_ARCHITECTURES[i % len(CHAT_ARCHITECTURES)])
    for i, (method, _) in enumerate(m for m in method_kind_matrix() if m[1] == "causal_lm")
]


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize(("method", "architecture"), CHAT_MATRIX)
def test_every_method_runs_on_llama_family_chat_models(tmp_path, chat_tok, method, architecture, use_lora):
    """The code path of a user's real Llama / Qwen2 / Mistral / Gemma2 checkpoint, full weights and LoRA on
    each family's projection names, on chat data."""
    from peft import LoraConfig

    from hf_unlearn.tiny import DECODER_ARCHITECTURES

    forget, retain = _chat_task(chat_tok)
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=DECODER_ARCHITECTURES[architecture]
    )
    trainer = UnlearningTrainer(
        tiny_decoder(chat_tok, architecture),
        make_config(tmp_path, method=method, max_steps=2, learning_rate=1e-2),
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=chat_tok,
        peft_config=lora if use_lora else None,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)
    if use_lora:
        assert all("lora_" in n for n in before)
