"""Question/answer pairs as ``{"prompt", "completion"}`` rows, in chat or plain form.

* ``chat=True``: TRL's conversational form, ``prompt=[{"role": "user", "content": question}]`` (after an optional
  ``{"role": "system", ...}`` turn and few-shot user/assistant turns), ``completion=[{"role": "assistant",
  "content": answer}]``; the tokenizer's chat template renders them.
* ``chat=False``: OpenUnlearning's template for models without a chat template (``configs/model/phi-1_5.yaml``,
  ``Llama-2-7b-hf.yaml``: ``user_start_tag="Question: "``, ``user_end_tag="\\n"``, ``asst_start_tag="Answer: "``,
  few-shot answers closed by ``"\\n\\n"``; ``src/data/utils.py:preprocess_chat_instance``). The prompt is
  ``"Question: {q}\\nAnswer:"`` and the completion ``" {a}"``: prompt + completion is exactly OpenUnlearning's
  text; the space goes with the answer so that a BPE tokenizer encodes the two parts as it encodes the whole.

Alternative answers (paraphrased, perturbed) are kept as strings: the answer itself in chat form (the metrics
wrap it as the assistant turn), ``" " + answer`` in plain form (it replaces the plain completion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

QUESTION_START = "Question: "
QUESTION_END = "\n"
ANSWER_START = "Answer:"
SHOT_END = "\n\n"


@dataclass(frozen=True)
class QAFormat:
    """How questions and answers become rows: ``chat`` form (with an optional system prompt) or plain."""

    chat: bool = True
    system_prompt: str | None = None

    def prompt(self, question: str, shots: Sequence[tuple[str, str]] = ()) -> Any:
        """The prompt of ``question``, after the few-shot ``(question, answer)`` pairs ``shots``."""
        if self.chat:
            turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            for q, a in shots:
                turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            return turns + [{"role": "user", "content": question}]
        head = "".join(f"{QUESTION_START}{q}{QUESTION_END}{ANSWER_START} {a}{SHOT_END}" for q, a in shots)
        system = f"{self.system_prompt}\n\n" if self.system_prompt else ""
        return f"{system}{head}{QUESTION_START}{question}{QUESTION_END}{ANSWER_START}"

    def completion(self, answer: str) -> Any:
        return [{"role": "assistant", "content": answer}] if self.chat else self.answer(answer)

    def answer(self, answer: str) -> str:
        """An alternative answer as the string the metrics put in place of the completion."""
        return answer if self.chat else f" {answer}"

    def rows(
        self,
        questions: Sequence[Any],
        answers: Sequence[Any],
        where: str,
        shots: Sequence[tuple[str, str]] = (),
    ) -> list[dict]:
        """``{"prompt", "completion"}`` rows; ``ValueError`` (naming ``where``) if a value is not a string."""
        questions, answers = list(questions), list(answers)
        check_strings(questions, where, "question")
        check_strings(answers, where, "answer")
        return [
            {"prompt": self.prompt(q, shots), "completion": self.completion(a)}
            for q, a in zip(questions, answers)
        ]


def check_strings(values: Sequence[Any], where: str, key: str, allow_empty: bool = False) -> None:
    """Every value must be a string (a non-empty one unless ``allow_empty``)."""
    values = list(values)
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str) or not (v or allow_empty)), None)
    if bad is not None:
        raise ValueError(f"{where}: row {bad} has no {key!r} string (got {values[bad]!r}).")


def check_answer_lists(values: Sequence[Any], where: str, key: str) -> None:
    """Every value must be a non-empty list of strings (e.g. TOFU's ``perturbed_answer``)."""
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(
                f"{where}: row {i} needs {key!r} as a non-empty list of strings (got {value!r})."
            )
