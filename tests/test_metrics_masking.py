"""``evaluate_unlearning(attention_mask="pad_token")``: OpenUnlearning's masking (``input_ids != pad_token_id``,
with EOS as the pad token of a tokenizer without one), which also masks an EOS *inside* a chat sequence; the
default (``"length"``) masks the padding only."""

import numpy as np
import pytest
import torch

from hf_unlearn.data import IGNORE_INDEX, build_preparer
from hf_unlearn.metrics import evaluate_unlearning
from hf_unlearn.metrics._passes import prepare
from hf_unlearn.metrics.generation import generate_completions
from hf_unlearn.tiny import TINY_CHAT_TEMPLATE, tiny_decoder, train_tokenizer

PEOPLE = ["Kalo Miren", "Tavi Osken", "Rumo Pelda", "Sena Vorik"]
TOWNS = ["Aldham", "Brisk", "Corvale", "Dunmere"]


def _chat(person: str, town: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"Where was {person} born?"},
            {"role": "assistant", "content": f"{person} was born in {town}."},
        ],
        "paraphrased_completion": f"{person} is from {town}.",
        "perturbed_completions": [f"{person} was born in {t}." for t in TOWNS if t != town][:2],
    }


@pytest.fixture(scope="module")
def chat_lm():
    """A Llama-style tokenizer *without* a pad token (as Llama 3's ships: pad becomes EOS) whose chat template
    closes every turn with EOS, and a tiny Llama built from config, in float64 (masking one EOS moves a random
    model's values by ~5e-5 relative: far above float64 noise)."""
    rows = [_chat(p, t) for p in PEOPLE for t in TOWNS]
    texts = [m["content"] for r in rows for m in r["messages"]] + [r["paraphrased_completion"] for r in rows]
    tok = train_tokenizer(texts, vocab_size=200, add_bos=True, chat_template=TINY_CHAT_TEMPLATE)
    tok.pad_token = None
    model = tiny_decoder(tok, hidden_size=32, num_layers=2, seed=0).double()
    rows = rows[::2]
    return tok, model, {"forget": rows[:4], "retain": rows[4:], "test": rows[4:]}


def _loss_with_mask(model, rows: list[dict], make_mask) -> float:
    """The mean over examples of the token-mean completion NLL, one example at a time, with the attention
    mask ``make_mask(input_ids)``: the hand-built reference."""
    losses = []
    for row in rows:
        ids = torch.tensor([row["input_ids"]])
        labels = torch.tensor([row["labels"]])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=make_mask(ids)).logits[:, :-1]
        targets = labels[:, 1:]
        scored = targets != IGNORE_INDEX
        nll = torch.nn.functional.cross_entropy(logits[scored], targets[scored])
        losses.append(float(nll))
    return float(np.mean(losses))


def test_the_pad_token_mask_is_input_ids_not_equal_to_pad_and_covers_the_eos_inside(chat_lm):
    tok, model, data = chat_lm
    rows, collator, _ = prepare(model, data["forget"], tok, "forget", attention_mask="pad_token")
    assert collator.pad_token_id == tok.eos_token_id  # a tokenizer without a pad token pads with EOS
    batch = collator(rows)
    ids = batch["input_ids"]
    torch.testing.assert_close(batch["attention_mask"], (ids != tok.eos_token_id).long())
    length_batch = build_preparer(model, tok)[1](rows)  # the default: every row's own tokens
    for i, row in enumerate(rows):
        inside = [j for j, t in enumerate(row["input_ids"][:-1]) if t == tok.eos_token_id]
        assert inside, "the chat template must put an EOS inside the sequence"
        assert batch["attention_mask"][i, inside].sum() == 0
        assert length_batch["attention_mask"][i].tolist() == [1] * len(row["input_ids"]) + [0] * (
            ids.shape[1] - len(row["input_ids"])
        )


def test_pad_token_masking_moves_the_metrics_and_matches_a_hand_built_mask(chat_lm):
    tok, model, data = chat_lm
    splits = dict(forget_dataset=data["forget"], retain_dataset=data["retain"], test_dataset=data["test"])
    ours = evaluate_unlearning(model, **splits, processing_class=tok, batch_size=3)
    theirs = evaluate_unlearning(
        model, **splits, processing_class=tok, batch_size=3, attention_mask="pad_token"
    )
    assert ours.keys() == theirs.keys()
    rows = prepare(model, data["forget"], tok, "forget")[0]
    eos = tok.eos_token_id
    by_length = _loss_with_mask(model, rows, lambda ids: torch.ones_like(ids))
    by_pad = _loss_with_mask(model, rows, lambda ids: (ids != eos).long())
    assert by_pad != pytest.approx(by_length, rel=2e-5)  # the EOS inside the sequence, masked, moves the loss
    assert ours["forget/loss"] == pytest.approx(by_length, rel=1e-6)  # the default is the length mask
    assert theirs["forget/loss"] == pytest.approx(by_pad, rel=1e-6)
    # every pass follows the switch: the other splits and the TOFU passes (paraphrased and perturbed answers)
    for key in ("retain/probability", "test/loss", "forget/truth_ratio"):
        assert theirs[key] != pytest.approx(ours[key], rel=2e-5), key


def test_generation_prompts_are_masked_the_same_way(chat_lm, monkeypatch):
    tok, model, data = chat_lm
    rows = prepare(model, data["forget"], tok, "forget")[0]
    seen = []
    generate = model.generate

    def spy(**kwargs):
        seen.append((kwargs["input_ids"], kwargs["attention_mask"]))
        return generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    generate_completions(model, rows, tok, max_new_tokens=2, batch_size=4, attention_mask="pad_token")
    generate_completions(model, rows, tok, max_new_tokens=2, batch_size=4)
    (ids, theirs), (same_ids, ours) = seen
    assert torch.equal(ids, same_ids) and (ids == tok.eos_token_id).any()
    torch.testing.assert_close(theirs, (ids != tok.eos_token_id).long())
    assert ours[ids == tok.eos_token_id].sum() > 0  # left padding only: the EOS inside stays visible


def test_an_unknown_attention_mask_is_refused(chat_lm):
    tok, model, data = chat_lm
    with pytest.raises(ValueError, match="attention_mask must be 'length'"):
        evaluate_unlearning(
            model, forget_dataset=data["forget"], retain_dataset=data["retain"], attention_mask="eos"
        )
