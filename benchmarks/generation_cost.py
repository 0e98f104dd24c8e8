"""``generation_cost``: what generation-based evaluation (TOFU's ROUGE-L, model utility) costs at the
``tofu-llama`` scenario's size: seconds per 100 questions of greedy generation, batched and left-padded
(``hf_unlearn.metrics.generation.generate_completions``) vs. one ``generate`` call per question.

Target: batched generation takes <= 0.25x the per-example loop's time (the loop is what a user writes first).
Both arms generate (the fraction of identical texts is recorded) with the scenario's budget (32 new tokens) and TOFU's (200; the
tiny model's 64 positions cap it, as ``generate_completions`` does for every model).
"""

from __future__ import annotations

from . import common

NAME = "generation_cost"
SCENARIO = "tofu-llama"
N_QUESTIONS = 100
BATCH_SIZE = 32


def run(quick: bool = False, threads: int | None = None) -> dict:
    from hf_unlearn.data import build_preparer
    from hf_unlearn.metrics.generation import generate_completions
    from hf_unlearn.scenarios import load_scenario

    report = common.Report(NAME, quick, threads)
    sc = load_scenario(SCENARIO, output_dir=str(common.SCENARIO_CACHE), seed=0)
    model = sc.original_model()
    preparer, _ = build_preparer(model, sc.tokenizer)
    rows = preparer(sc.retain.select(range(N_QUESTIONS)), "retain")
    budgets = [32] if quick else [32, 200]
    for budget in budgets:
        texts: dict[int, list[str]] = {}

        def arm(batch_size: int, budget: int = budget, texts: dict = texts):
            def call():
                texts[batch_size] = generate_completions(model, rows, sc.tokenizer, budget, batch_size)

            return call

        times = common.interleaved_times(
            {"batched": arm(BATCH_SIZE), "per_example": arm(1)}, repeats=2 if quick else 3
        )
        stats = common.ratio_stats(times["batched"], times["per_example"])
        same = sum(a == b for a, b in zip(texts[BATCH_SIZE], texts[1])) / len(rows)
        stats["identical_generations"] = same  # padding may flip a greedy near-tie, rarely
        report.details[f"max_new_tokens={budget}"] = stats
        report.targets.append(
            common.target(
                f"batched vs per-example generation, max_new_tokens={budget}",
                f"seconds per {N_QUESTIONS} questions: batched (batch {BATCH_SIZE}) {stats['median_s']:.2f} s, "
                f"per-example loop {stats['baseline_median_s']:.2f} s",
                stats["ratio"],
                0.25,
                repeats=len(times["batched"]),
            )
        )
    report.notes = [
        f"{SCENARIO} original model ({sc.sizes['n_params']:,} parameters, Llama, 64 positions), {N_QUESTIONS} "
        "retain questions in the chat template, greedy, stopped at EOS; interleaved repeats, median paired ratio.",
        "A TOFU evaluation of one model generates on forget + retain + holdout (720 questions here).",
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run)
