"""``hf-unlearn``: command-line entry point.

    hf-unlearn quickstart [--output_dir DIR]            the main job on a built-in offline scenario
    hf-unlearn run RECIPE.yaml [--key value ...]         unlearn as a YAML recipe says (flags override it)
    hf-unlearn eval --model DIR [--golden DIR] ...       metrics of an existing model directory
    hf-unlearn theory [--output_dir DIR]                 the linear-regression theory as numbers and figures

Heavy imports (torch, transformers) happen inside the commands, so ``hf-unlearn --help`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"quickstart": cmd_quickstart, "run": cmd_run, "eval": cmd_eval, "theory": cmd_theory}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    try:
        return commands[argv[0]](argv[1:]) or 0
    except (ValueError, FileNotFoundError) as err:
        print(f"hf-unlearn {argv[0]}: error: {err}", file=sys.stderr)
        return 2


def cmd_quickstart(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn quickstart",
        description="Unlearn a built-in scenario "
        "with several methods and compare them with the original and golden models.",
    )
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument("--scenario", default="polarity-minilm")
    parser.add_argument("--methods", default="ft,dr,ieu", help="comma-separated unlearning methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite_output_dir", action="store_true")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    from .quickstart import quickstart

    result = quickstart(
        output_dir=args.output_dir,
        scenario=args.scenario,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        seed=args.seed,
        overwrite=args.overwrite_output_dir,
        progress=not args.no_progress,
    )
    print(result["table"])
    print(f"\nWall time: {result['seconds']:.0f} s. Report, cards and plots in {args.output_dir}/")
    return 0


def parse_recipe(argv: list[str]):
    """``(RunArguments, UnlearningConfig)`` from ``RECIPE.yaml`` and ``--key value`` overrides."""
    from transformers import HfArgumentParser

    from .config import UnlearningConfig
    from .pipeline import RunArguments

    parser = HfArgumentParser((RunArguments, UnlearningConfig), prog="hf-unlearn run")
    recipe_path = argv[0] if argv and not argv[0].startswith("-") else None
    if recipe_path is not None:
        argv = argv[1:]
        parser.set_defaults(**read_recipe(recipe_path, parser))
    run_args, config = parser.parse_args_into_dataclasses(args=argv)
    return run_args, config


def read_recipe(path: str, parser: argparse.ArgumentParser) -> dict:
    import yaml

    if not os.path.isfile(path):
        raise ValueError(f"recipe {path!r} does not exist.")
    try:
        with open(path) as f:
            recipe = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path!r} is not valid YAML: {err}") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe {path!r} must be a mapping of option: value.")
    actions = {action.dest: action for action in parser._actions}
    for key in recipe:
        if key not in actions:
            raise ValueError(f"recipe {path!r}: unknown key {key!r} (see `hf-unlearn run --help`).")
    return {key: _recipe_value(value, actions[key]) for key, value in recipe.items()}


def _recipe_value(value, action):
    # YAML 1.1 reads an unquoted `no` as False: give string options their word back.
    if (
        isinstance(value, bool)
        and action.type not in (None, bool)
        and action.type.__name__ != "string_to_bool"
    ):
        return "no" if not value else "yes"
    # argparse converts string defaults with the option's type (YAML reads 1e-4 as a string anyway).
    return str(value) if isinstance(value, float) else value


def cmd_run(argv: list[str]) -> int:
    run_args, config = parse_recipe(argv)
    from .pipeline import run

    report = run(run_args, config)
    if report:
        print(json.dumps(report.get("metrics", {}), indent=2, default=str))
        print(f"Unlearned model, report and model card written to {config.output_dir}")
    return 0


def cmd_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn eval", description="Unlearning metrics of a model directory."
    )
    parser.add_argument("--model", required=True, help="model directory (safetensors)")
    parser.add_argument("--golden", help="golden model directory")
    parser.add_argument("--original", help="original model directory")
    parser.add_argument(
        "--scenario", help="take datasets (and original/golden when not given) from a scenario"
    )
    parser.add_argument("--scenario_cache_dir", default="outputs/scenarios")
    parser.add_argument("--forget_dataset")
    parser.add_argument("--retain_dataset")
    parser.add_argument("--test_dataset")
    parser.add_argument("--output", help="write the metrics as JSON here")
    parser.add_argument("--no_relearn", action="store_true", help="skip the relearning convergence delay")
    parser.add_argument(
        "--generation",
        action="store_true",
        help="causal LMs: generate answers for ROUGE-L and model utility (on by default for tofu-llama)",
    )
    parser.add_argument("--max_new_tokens", type=int, help="generation budget per answer (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .evaluate_dir import evaluate_directory

    metrics = evaluate_directory(args)
    text = json.dumps(metrics, indent=2, default=str)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


def cmd_theory(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn theory",
        description="Linear-regression theory of FT, DR "
        "and IEU unlearning as numbers (theory.json, theory.md) and figures.",
    )
    parser.add_argument("--output_dir", default="outputs/theory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .validation.report import write_theory_report

    write_theory_report(args.output_dir, seed=args.seed)
    with open(os.path.join(args.output_dir, "theory.md")) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
