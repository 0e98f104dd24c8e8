"""``hf-unlearn``: command-line entry point.

    hf-unlearn quickstart [--output_dir DIR]            the main job on a built-in offline scenario
    hf-unlearn run RECIPE.yaml [--key value ...]         unlearn as a YAML recipe says (flags override it)
    hf-unlearn eval --model DIR [--golden DIR] ...       metrics of an existing model directory
    hf-unlearn theory [--output_dir DIR]                 the linear-regression theory as numbers and figures

Heavy imports (torch, transformers) happen inside the commands, so ``hf-unlearn --help`` starts fast.
"""

from __future__ import annotations

import argparse
import ast
import difflib
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
    parser = ArgumentParser(
        prog="hf-unlearn quickstart",
        description="Unlearn a built-in scenario "
        "with several methods and compare them with the original and golden models.",
    )
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument("--scenario", default="polarity-minilm")
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated rows (default ft,mask+ft,dr,ieu; on digits-ddpm ft,ga,grad_diff,rl,salun,esd,ieu): a "
        "method at the scenario's defaults (dr, ieu, npo, ...), except 'ft': naive fine-tuning (no influence "
        "removal, no stopping); 'mask+ft' (or 'rbm+ft', 'mask+npo', ...) resets the weights the forget set moves "
        "first",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite_output_dir", action="store_true")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    from .quickstart import quickstart

    result = quickstart(
        output_dir=args.output_dir,
        scenario=args.scenario,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None,
        seed=args.seed,
        overwrite=args.overwrite_output_dir,
        progress=not args.no_progress,
    )
    print(result["table"])
    print(f"\nWall time: {result['seconds']:.0f} s. Report, cards and plots in {args.output_dir}/")
    return 0


class ShortErrors:
    """An ``argparse`` parser mixin: a bad option or value gets a one-line error and where the help is, instead
    of the usage block (``hf-unlearn run``'s lists some 200 options), and an unknown option the names close to
    it."""

    def error(self, message: str):
        """Exit 2 with ``PROG: error: MESSAGE`` and a pointer to ``PROG --help``."""
        self.exit(2, f"{self.prog}: error: {message}\nsee `{self.prog} --help`\n")

    def parse_known_args(self, args=None, namespace=None):
        """``ArgumentParser.parse_known_args``, with any argument left over an error that says what was meant."""
        namespace, rest = super().parse_known_args(args, namespace)
        if rest:
            options = [action.option_strings[0] for action in self._actions if action.option_strings]
            self.error(f"unrecognized arguments: {' '.join(rest)}{did_you_mean(rest, options)}")
        return namespace, rest


class ArgumentParser(ShortErrors, argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``ShortErrors``."""


def did_you_mean(words: list[str], known: list[str]) -> str:
    """`` (did you mean '--x'?)`` for the options among ``words`` (``--name`` or ``--name=value``) that are close
    to one of ``known``, else ``""``."""
    close = []
    for word in words:
        name = word.split("=", 1)[0]
        if name.startswith("-"):
            close += difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {' or '.join(repr(c) for c in dict.fromkeys(close))}?)" if close else ""


RESUME_HELP = (
    "Resume an interrupted run: a checkpoint-* folder, or true for the last one in output_dir (which may then be "
    "non-empty without --overwrite_output_dir). The run ends as the uninterrupted one would have."
)


def recipe_parser():
    """The ``HfArgumentParser`` of ``hf-unlearn run``: ``RunArguments`` and ``UnlearningConfig`` options, with
    one-line errors (``ShortErrors``) and their own help on the ``--no_X`` options of boolean fields."""
    from transformers import HfArgumentParser

    from .config import UnlearningConfig
    from .pipeline import RunArguments

    parser_class = type("RecipeParser", (ShortErrors, HfArgumentParser), {})
    parser = parser_class((RunArguments, UnlearningConfig), prog="hf-unlearn run")
    for action in parser._actions:
        if action.dest == "resume_from_checkpoint":  # TrainingArguments says scripts decide what it means
            action.help = RESUME_HELP
        # HfArgumentParser gives --no_X (a bool field that defaults to True) the help of --X
        if isinstance(action, argparse._StoreFalseAction) and f"--no_{action.dest}" in action.option_strings:
            action.help = f"Turn off --{action.dest} (on by default)."
            action.default = (
                argparse.SUPPRESS
            )  # never used (--X's comes first); keeps "(default: False)" away
    return parser


def parse_recipe(argv: list[str]):
    """``(RunArguments, UnlearningConfig)`` from ``RECIPE.yaml`` and ``--key value`` overrides. The recipe is read
    and its keys checked before ``transformers`` is imported, so a mistake in it is reported at once."""
    recipe_path = argv[0] if argv and not argv[0].startswith("-") else None
    recipe = read_recipe(recipe_path) if recipe_path is not None else {}
    parser = recipe_parser()
    if recipe_path is not None:
        argv = argv[1:]
        parser.set_defaults(**recipe_defaults(recipe, parser, recipe_path))
    run_args, config = parser.parse_args_into_dataclasses(args=argv)
    block = recipe.get("diffusion")
    if isinstance(block, dict) and run_args.diffusion and run_args.diffusion != block:
        run_args.diffusion = {**block, **run_args.diffusion}  # --diffusion updates the recipe's block
    return run_args, config


def read_recipe(path: str) -> dict:
    """The ``option: value`` mapping of YAML recipe ``path``; ``ValueError`` (one line) for a missing file, bad
    YAML or an unknown option, before anything heavy is imported."""
    import yaml

    if not os.path.isfile(path):
        raise ValueError(f"recipe {path!r} does not exist.")
    try:
        with open(path) as f:
            recipe = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path!r} is not valid YAML: {_yaml_problem(err)}") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe {path!r} must be a mapping of option: value.")
    known = recipe_keys()
    if known is not None:
        _check_keys(recipe, known, path)
    return recipe


def _yaml_problem(err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def _check_keys(recipe: dict, known, path: str) -> None:
    for key in recipe:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"recipe {path!r}: unknown key {key!r} ({hint}see `hf-unlearn run --help`).")


def recipe_keys() -> set[str] | None:
    """The options of ``hf-unlearn run`` without importing ``transformers`` or torch: the fields of
    ``RunArguments``, and those ``UnlearningConfig`` and ``TrainingArguments`` declare in their source files.
    ``None`` when a source cannot be read that way (the parser's own check then applies)."""
    import importlib.util
    from dataclasses import fields

    from .pipeline.arguments import RunArguments

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    training_args = os.path.join(list(spec.submodule_search_locations)[0], "training_args.py")
    here = os.path.dirname(__file__)
    declared = [
        _declared_fields(os.path.join(here, "config.py"), "UnlearningConfig"),
        _declared_fields(training_args, "TrainingArguments"),
        *_method_settings_fields(os.path.join(here, "methods")),
    ]
    if None in declared:
        return None
    return {f.name for f in fields(RunArguments)}.union(*declared)


#: the bases whose fields ``recipe_keys`` reads from source: TrainingArguments', and the method settings'
KNOWN_BASES = ([], ["TrainingArguments"], ["TrainingArguments", "*SETTINGS"])


def _declared_fields(path: str, class_name: str) -> set[str] | None:
    """The annotated names in the body of class ``class_name`` of source file ``path``; ``None`` when the class
    is not found or has a base other than those of ``KNOWN_BASES`` (whose fields would be missed)."""
    tree = _source_tree(path)
    for node in tree.body if tree else []:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            if [ast.unparse(base) for base in node.bases] not in KNOWN_BASES:
                return None
            return _annotated_names(node)
    return None


def _method_settings_fields(folder: str) -> list[set[str] | None]:
    """The fields of every ``@register_settings`` class in the modules of ``folder`` (``hf_unlearn/methods``)."""
    found: list[set[str] | None] = []
    for name in sorted(os.listdir(folder)):
        tree = _source_tree(os.path.join(folder, name)) if name.endswith(".py") else None
        for node in tree.body if tree else []:
            if isinstance(node, ast.ClassDef) and "register_settings" in map(
                ast.unparse, node.decorator_list
            ):
                found.append(_annotated_names(node))
    return found or [None]


def _source_tree(path: str) -> ast.Module | None:
    try:
        with open(path) as f:
            return ast.parse(f.read())
    except (OSError, SyntaxError):
        return None


def _annotated_names(node: ast.ClassDef) -> set[str]:
    return {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def recipe_defaults(recipe: dict, parser: argparse.ArgumentParser, path: str) -> dict:
    """``parser.set_defaults`` values of ``recipe`` (each option's type given its value back, see
    ``_recipe_value``); an option the parser does not have is an error."""
    actions = {action.dest: action for action in parser._actions}
    _check_keys(recipe, set(actions) - {"help"}, path)
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
    from .pipeline.sequential_run import is_sequential, run_sequential

    # several forget sets, one after another: a line per request, the table in the report's "sequential"
    report = run_sequential(run_args, config) if is_sequential(run_args) else run(run_args, config)
    leave_process_group()  # after a failure the ranks may not meet again: only on success
    if report:
        print(json.dumps(report.get("metrics", {}), indent=2, default=str))
        print(f"Unlearned model, report and model card written to {config.output_dir}")
    return 0


def leave_process_group() -> None:
    """Under ``accelerate launch`` / ``torchrun``, leave the process group before the process exits: gloo
    aborts some exits ("terminate called without an active exception", SIGABRT) when the group is still alive."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def cmd_eval(argv: list[str]) -> int:
    parser = ArgumentParser(prog="hf-unlearn eval", description="Unlearning metrics of a model directory.")
    parser.add_argument(
        "--model",
        required=True,
        help="model directory (safetensors), or a PEFT adapter folder (hf-unlearn run --lora_r)",
    )
    parser.add_argument(
        "--base_model",
        help="an adapter's base model directory, when its adapter_config.json does not name a local folder",
    )
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
    add_relearn_options(parser)
    parser.add_argument(
        "--heldout_label_corruption",
        choices=["none", "random"],
        help="golden-free RCD: 'random' when the forget set is wrong labels, so the held-out reference is relabeled "
        "the same way (default: the run's, from the model folder's report, else the scenario's, else 'none')",
    )
    parser.add_argument(
        "--generation",
        action="store_true",
        help="causal LMs: generate answers for ROUGE-L and model utility (on by default for tofu-llama)",
    )
    parser.add_argument("--max_new_tokens", type=int, help="generation budget per answer (default 200)")
    parser.add_argument(
        "--attacks",
        help="comma-separated attacks (quantize_8bit, quantize_4bit, relearn_partial, torchao_int8, torchao_int4): "
        "forget metrics of attacked "
        "copies of the model, golden and original (attack/* keys, docs/metrics.md)",
    )
    parser.add_argument(
        "--attack_relearn_steps", type=int, default=25, help="relearn_partial: fine-tuning steps (default 25)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the scenario and of RCD's relearning (default: the run's, from the model folder's report, else 0)",
    )
    parser.add_argument(
        "--judge",
        help="class-conditional diffusion models: an image classifier folder (with its image processor) that judges "
        "samples of the forgotten and kept classes (generation accuracy, Fréchet distance; docs/metrics.md)",
    )
    parser.add_argument(
        "--clip",
        help="text-to-image pipelines: a local CLIP folder (safetensors): zero-shot judge of the forget and kept "
        "prompts' samples (without --judge) and CLIP score (docs/metrics.md)",
    )
    parser.add_argument(
        "--generation_samples", type=int, help="--judge / --clip: samples per class or prompt (default 50)"
    )
    args = parser.parse_args(argv)
    from .pipeline.evaluate_dir import evaluate_directory

    metrics = evaluate_directory(args)
    text = json.dumps(metrics, indent=2, default=str)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


def add_relearn_options(parser: argparse.ArgumentParser) -> None:
    """``--relearn_*``: the RCD protocol options of ``RunArguments`` (same names and types), defaulting to None
    so that ``hf-unlearn eval`` can tell a value given from one to take from the run's report."""
    import typing
    from dataclasses import fields

    from .pipeline.arguments import RunArguments

    hints = typing.get_type_hints(RunArguments)
    for field in fields(RunArguments):
        if field.name.startswith("relearn_"):
            kind = next(
                t for t in (*typing.get_args(hints[field.name]), hints[field.name]) if t is not type(None)
            )
            otherwise = "as above" if field.default is None else field.default
            text = (
                f"{field.metadata['help']} Default: the run's (the model folder's unlearning_report.json), else "
                f"the scenario's, else {otherwise}."
            )
            parser.add_argument(f"--{field.name}", type=kind, help=text)


def cmd_theory(argv: list[str]) -> int:
    parser = ArgumentParser(
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
