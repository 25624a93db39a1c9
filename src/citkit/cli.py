"""The citkit command line: parse, build configs, call the library, print results.

Every `CitkitError` becomes one line on stderr and exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from citkit.data.streams import DEFAULT_STREAM
from citkit.errors import CitkitError

RUN_EPILOG = "Settings (use --set NAME=VALUE; method options as method.NAME=VALUE):\n"


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _run_settings_help() -> str:
    from citkit.config import describe
    from citkit.run_config import RunConfig

    rows = [r for r in describe(RunConfig) if r[0] != "method_options"]
    return RUN_EPILOG + "\n".join(f"  {name} (default {default}): {help_}" for name, default, help_ in rows)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of settings (e.g. a preset under configs/)")
    parser.add_argument("--stream", help=f"stream name or stream YAML file (default: {DEFAULT_STREAM})")
    parser.add_argument("--method", help="method name (default: lora-ft; see `citkit methods`)")
    parser.add_argument("--model", help="'tiny', a local model folder or a cached hub id")
    parser.add_argument("--data-root", help="folder of a real stream's local data")
    parser.add_argument("--seed", type=int, help="seed (default 0)")
    parser.add_argument("--name", help="run name (default: <stream>-<method>-seed<seed>)")
    parser.add_argument("--runs-dir", help="folder of run directories (default: runs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override any setting")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or logs")


def _config_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from citkit.run_config import build_run_config, load_config_file

    base = load_config_file(args.config) if args.config else {}
    overrides = list(args.set)
    if args.model:
        overrides.append(f"model.path={args.model}")
    if args.stream:
        overrides.append(f"stream.name={args.stream}")
    if args.data_root:
        overrides.append(f"stream.data_root={args.data_root}")
    if args.quiet:
        overrides.append("train.progress=false")
    return build_run_config(base, overrides, method=args.method, seed=args.seed, name=args.name, runs_dir=args.runs_dir)


def _print_result(result) -> None:  # type: ignore[no-untyped-def]
    from citkit.report.tables import metrics_table

    print(f"run directory: {result.run_dir}")
    print(result.matrix.to_markdown())
    print()
    print(metrics_table(result.metrics))


def cmd_run(args: argparse.Namespace) -> int:
    from citkit.runner import run

    _print_result(run(_config_from_args(args)))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    import json

    from citkit.estimate import estimate

    result = estimate(_config_from_args(args), seq_len=args.seq_len, processes=args.processes, sharding=args.sharding)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.to_markdown())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from citkit.compare import compare, compare_seeds

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.seeds:
        folder = compare_seeds(_config_from_args(args), methods, _parse_seeds(args.seeds))
        print((folder / "compare.md").read_text())
        print(f"wrote {folder / 'compare.md'} and {folder / 'compare.csv'} (one compare folder per seed beside it)")
        return 0
    folder = compare(_config_from_args(args), methods)
    print((folder / "compare.md").read_text())
    print(f"wrote {folder / 'compare.md'}, {folder / 'compare.csv'} and {folder / 'compare.png'}")
    return 0


def _parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CitkitError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None


def cmd_resume(args: argparse.Namespace) -> int:
    from citkit.run_config import build_run_config
    from citkit.rundir import saved_settings
    from citkit.runner import run

    config = build_run_config(saved_settings(args.run_dir), ["train.progress=false"] if args.quiet else [])
    _print_result(run(config))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from citkit.eval.matrix import AccuracyMatrix
    from citkit.report.plots import plot_matrix
    from citkit.report.tables import metrics_table, write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "matrix.json").is_file():
        raise CitkitError(f"{run_dir} has no matrix.json: not a run directory, or no task has finished yet")
    matrix = AccuracyMatrix.load(run_dir)
    report = write_report(run_dir)
    plot_matrix(matrix, run_dir / "matrix.png", title=run_dir.name)
    print(matrix.to_markdown())
    print()
    print(metrics_table(matrix.metrics()))
    print(f"\nwrote {report} and {run_dir / 'matrix.png'}")
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from citkit.data.toy.world import TOY_STREAMS, ToyWorldConfig, export

    variant = TOY_STREAMS.get(args.stream)
    if variant is None:
        raise CitkitError(f"only the toy streams can be exported ({', '.join(TOY_STREAMS)}), not {args.stream!r}")
    path = export(ToyWorldConfig(variant, args.train_per_task, args.test_per_task, args.seed), args.out)
    print(f"wrote {path}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from citkit.data.llava_format import check_file
    from citkit.data.streams import StreamConfig, check_stream

    processor = None
    if args.model:
        from citkit.models.loading import ModelConfig, load_processor
        from citkit.models.registry import resolve_model_path

        processor = load_processor(resolve_model_path(ModelConfig(path=args.model), Path(args.runs_dir)))
    target = Path(args.target)
    if target.suffix == ".json" or target.suffix == ".jsonl":
        problems = check_file(target, args.kind, args.image_root, allow_outside_root=args.allow_images_outside_root,
                              tokenizer=processor)
    else:
        config = StreamConfig(name=args.target, data_root=args.data_root,
                              allow_images_outside_root=args.allow_images_outside_root)
        problems = check_stream(config, Path(args.runs_dir) / "_data", processor)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {args.target}")
    return 1 if problems else 0


def _pretrain_defaults() -> Any:
    from citkit.models.pretrain import PretrainConfig

    return PretrainConfig()


def cmd_model_pretrain(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from citkit.models.pretrain import PretrainConfig, pretrain_tiny

    config = PretrainConfig(world=args.world, steps=args.steps, seed=args.seed)
    quality = pretrain_tiny(config, args.out, progress=not args.quiet)
    if PartialState().is_main_process:  # under torch.distributed.run, one line from the process that saved
        print(f"wrote {args.out}: base-task scores {quality['scores']} (mean {quality['mean']:.1f}, "
              f"gate {quality['quality_gate']}), {quality['train_seconds']:.0f} s of training on "
              f"{quality['processes']} process(es)")
    return 0


def _print_methods(registry: Any) -> int:
    """Each registered method's first docstring line and its options with defaults and help."""
    from citkit.config import describe

    for name in registry.names():
        cls = registry.get(name)
        print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for option, default, help_ in describe(cls.config_class):
            print(f"    method.{option} (default {default}): {help_}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from citkit.methods import METHODS

    return _print_methods(METHODS)


def cmd_streams(args: argparse.Namespace) -> int:
    from citkit.data.streams import packaged_streams, stream_names

    packaged = packaged_streams()
    for name in stream_names():
        where = packaged[name] if name in packaged else "built-in toy world"
        print(f"{name}: {where}{' (the default)' if name == DEFAULT_STREAM else ''}")
    return 0


def cmd_analyze_cka(args: argparse.Namespace) -> int:
    from citkit.analysis.layer_similarity import LayerSimilarityConfig, analyze_layer_similarity
    from citkit.config import from_dict, parse_override, set_path
    from citkit.data.streams import stream_title
    from citkit.run_config import safe_name

    data: dict = {"stream": {"name": args.stream}, "train": {"progress": not args.quiet}}
    out = args.out or f"{args.runs_dir}/cka-{safe_name(stream_title(args.stream))}"
    pairs = [("stream.data_root", args.data_root), ("model.path", args.model),
             ("samples_per_task", args.samples_per_task), ("out_dir", out), ("runs_dir", args.runs_dir),
             ("seed", args.seed), ("include_base", args.include_base or None)]
    for key, value in pairs:
        if value is not None:
            set_path(data, key.split("."), value)
    if args.tasks:
        set_path(data, ["stream", "tasks"], args.tasks)
    for item in args.checkpoint:
        task, _, path = item.partition("=")
        if not path:
            raise CitkitError(f"--checkpoint {item!r} must look like TASK=FOLDER")
        data.setdefault("checkpoints", {})[task] = path
    for text in args.set:
        set_path(data, *parse_override(text))
    config = from_dict(LayerSimilarityConfig, data)
    result = analyze_layer_similarity(config)
    print(result.to_markdown())
    print(f"wrote cka.csv, cka.md, cka.json and cka.png in {config.out_dir}")
    return 0


def cmd_analyze_blocks(args: argparse.Namespace) -> int:
    from citkit.analysis.block_test import BlockTestConfig, analyze_blocks

    samples = None if args.samples_per_task == 0 else args.samples_per_task
    config = BlockTestConfig(run_dir=args.run_dir, samples_per_task=samples, fusion=args.fusion,
                             batch_size=args.batch_size, out_dir=args.out or "", updates_only=args.updates_only,
                             modules=tuple(m.strip() for m in args.modules.split(",")) if args.modules else ())
    result = analyze_blocks(config)
    print(result.to_markdown())
    print(f"wrote blocks.md, blocks.csv and blocks.json in {config.out_dir or Path(args.run_dir) / 'blocks'}")
    return 0


def _fed_config_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from citkit.federated.commands import FLAGS, fed_config, split_overrides

    args.set, federated = split_overrides(args.set)
    return fed_config(_config_from_args(args), federated, {k: getattr(args, k) for k in FLAGS})


def cmd_fed_run(args: argparse.Namespace) -> int:
    from citkit.federated import run
    from citkit.federated.commands import result_text

    print(result_text(run(_fed_config_from_args(args), backend=args.backend)))
    return 0


def cmd_fed_compare(args: argparse.Namespace) -> int:
    from citkit.federated.compare import fed_compare, fed_compare_seeds

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    config = _fed_config_from_args(args)
    if args.seeds:
        folder = fed_compare_seeds(config, methods, _parse_seeds(args.seeds), backend=args.backend)
    else:
        folder = fed_compare(config, methods, backend=args.backend)
    print((folder / "compare.md").read_text())
    print(f"wrote {folder / 'compare.md'} and {folder / 'compare.csv'}")
    return 0


def cmd_fed_resume(args: argparse.Namespace) -> int:
    from citkit.federated import run
    from citkit.federated.commands import result_text, resume_config

    print(result_text(run(resume_config(Path(args.run_dir), args.quiet))))
    return 0


def cmd_fed_strategies(args: argparse.Namespace) -> int:
    from citkit.federated.commands import strategies_text

    print(strategies_text())
    return 0


def _cil_config_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from citkit.cil.runner import build_cil_config
    from citkit.run_config import load_config_file

    base = load_config_file(args.config) if args.config else {}
    top = {"method": getattr(args, "method", None), "seed": getattr(args, "seed", None), "name": args.name,
           "runs_dir": args.runs_dir, "data.dataset": args.dataset, "data.root": args.root, "data.tasks": args.tasks,
           "model.path": args.model}
    return build_cil_config(base, list(args.set) + (["train.progress=false"] if args.quiet else []), **top)


def cmd_cil_run(args: argparse.Namespace) -> int:
    from citkit.cil.runner import run_cil

    result = run_cil(_cil_config_from_args(args))
    print(f"run directory: {result.run_dir}")
    print((result.run_dir / "report.md").read_text())
    return 0


def cmd_cil_compare(args: argparse.Namespace) -> int:
    from citkit.cil.compare import compare_cil

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    folder = compare_cil(_cil_config_from_args(args), methods, seeds)
    print((folder / "compare.md").read_text())
    print(f"wrote {folder / 'compare.md'}, compare.csv, compare.json and compare.png")
    return 0


def cmd_cil_pretrain(args: argparse.Namespace) -> int:
    from citkit.cil.pretrain import ViTPretrainConfig, pretrain_tiny_vit

    quality = pretrain_tiny_vit(ViTPretrainConfig(seed=args.seed), args.out, progress=not args.quiet)
    print(f"wrote {args.out}: held-out accuracy {quality['held_out_accuracy']:.1f} (gate {quality['quality_gate']}), "
          f"{quality['train_seconds']:.0f} s of training")
    return 0


def cmd_cil_methods(args: argparse.Namespace) -> int:
    from citkit.cil.methods import CIL_METHODS

    return _print_methods(CIL_METHODS)


def _add_cil_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of settings")
    parser.add_argument("--dataset", help="builtin (default), digits, imagefolder, cifar100, tinyimagenet, imagenet-r, "
                        "imagenet-380")
    parser.add_argument("--root", help="folder of a dataset read from disk")
    parser.add_argument("--tasks", type=int, help="number of tasks (default 5)")
    parser.add_argument("--model", help="'tiny' (default), a local ViT/DeiT folder or a cached hub id")
    parser.add_argument("--name", help="run name (default: cil-<dataset>-<T>t-<method>-seed<seed>)")
    parser.add_argument("--runs-dir", help="folder of run directories (default: runs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=(
        "any setting: data.*, model.*, adapter.*, train.*, method.NAME (see `citkit cil methods`)"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars or logs")


def _add_fed_arguments(p: argparse.ArgumentParser) -> None:
    _add_run_arguments(p)
    from citkit.federated.config import FederatedConfig  # needs no Flower until a config is built

    defaults = {f.name: f.default for f in dataclasses.fields(FederatedConfig)}
    for flag, name, kind in (("clients", "num_clients", int), ("clients-per-round", "clients_per_round", int),
                             ("rounds", "rounds_per_stage", int), ("local-epochs", "local_epochs", float),
                             ("beta", "beta", float)):
        p.add_argument(f"--{flag}", type=kind, help=f"federated.{name} (default {defaults[name]:g})")
    p.add_argument("--setting", help="federated.setting: homogeneous or heterogeneous")
    p.add_argument("--scenario", help="federated.scenario: task or capability")
    p.add_argument("--partition", help="federated.partition: dirichlet or answer-skew")
    p.add_argument("--strategy", help="federated.strategy (see `citkit fed strategies`)")
    p.add_argument("--backend", choices=["in-process", "simulation"], default="in-process",
                   help="in-process (default) or Flower's simulation engine (Ray; pip install 'citkit[simulation]')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citkit", description="Continual instruction tuning of multimodal LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a stream with a method", epilog=_run_settings_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="run several methods on one stream and seed; one side-by-side table",
                       epilog=_run_settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", required=True, help=(
        "comma-separated method names, e.g. zero-shot,lora-ft,joint; a variant is METHOD:OPTION=VALUE[:...], "
        "e.g. hide-llava:layout=expand-all (its own row and run directory)"))
    p.add_argument("--seeds", default=None, help=(
        "comma-separated seeds, e.g. 0,1,2: run the comparison once per seed and write one table of mean ± sd "
        "(numbers are deterministic only on one machine with one thread count; report seed means)"))
    _add_run_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("estimate", help="memory per device of a run (parameters, optimizer, method state, "
                       "activations), before anything runs; see docs/estimate.md", epilog=_run_settings_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(p)
    p.add_argument("--seq-len", type=int, help="tokens per sample (default: image tokens + 256, capped by the model)")
    p.add_argument("--processes", type=int, default=1, help="data-parallel processes (devices)")
    p.add_argument("--sharding", choices=["none", "zero2", "zero3"], default="none",
                   help="none: DDP, all replicated; zero2: gradients and optimizer sharded; zero3/FSDP: weights too")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON (bytes and counts)")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("resume", help="continue an interrupted run after its last finished task")
    p.add_argument("run_dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("report", help="write report.md and matrix.png of a run directory and print its metrics")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="export the toy world; check data files and streams").add_subparsers(
        dest="data_command", required=True)
    p = data.add_parser("export", help="write a toy stream as LLaVA-format JSON + PNG files")
    p.add_argument("--stream", default=DEFAULT_STREAM, help="a built-in toy stream: toy-mixed (the default), toy, "
                   "toy-shared, toy-base (the tiny model's pretraining mixture), toy-format, toy-format-shared, "
                   "toy-format-base (the first world)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-task", type=int, default=1000)
    p.add_argument("--test-per-task", type=int, default=200)
    p.set_defaults(func=cmd_data_export)
    p = data.add_parser("check", help="validate a LLaVA-format file or a whole stream; list every problem")
    p.add_argument("target", help="a .json/.jsonl data file, a stream name or a stream YAML file")
    p.add_argument("--kind", choices=["train", "test"], default="train", help="layout of a single file")
    p.add_argument("--image-root", help="folder the file's image paths are relative to")
    p.add_argument("--data-root", help="folder of a stream's data")
    p.add_argument("--model", help="also list answers this model's tokenizer cannot represent (unknown tokens, or "
                   "text that does not decode back), with the share of each file: 'tiny', a folder or a cached hub id")
    p.add_argument("--allow-images-outside-root", action="store_true",
                   help="accept absolute image paths and paths that climb out of the image root with '../'")
    p.add_argument("--runs-dir", default="runs")
    p.set_defaults(func=cmd_data_check)

    model = sub.add_parser("model", help="build the tiny base model").add_subparsers(dest="model_command",
                                                                                     required=True)
    p = model.add_parser("pretrain", help="build and pretrain the tiny toy model (quality-gated), save it")
    p.add_argument("--out", required=True)
    recipe = _pretrain_defaults()
    p.add_argument("--world", default=recipe.world, help="'domains' (the packaged tiny) or 'format-shift' (tiny-v1)")
    p.add_argument("--steps", type=int, default=recipe.steps, help=f"full fine-tune steps (default {recipe.steps})")
    p.add_argument("--seed", type=int, default=recipe.seed)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_model_pretrain)

    p = sub.add_parser("methods", help="list methods and their options")
    p.set_defaults(func=cmd_methods)
    analyze = sub.add_parser("analyze", help="model analyses").add_subparsers(dest="analyze_command", required=True)
    p = analyze.add_parser("cka", help="fine-tune one LoRA per task, compare the task models layer by layer with CKA")
    p.add_argument("--stream", default=DEFAULT_STREAM,
                   help=f"stream name or stream YAML file (default: {DEFAULT_STREAM})")
    p.add_argument("--model", help="'tiny' (default), a local model folder or a cached hub id")
    p.add_argument("--data-root", help="folder of a real stream's local data")
    p.add_argument("--tasks", help="comma-separated tasks to compare (default: all)")
    p.add_argument("--samples-per-task", type=int, help="probe inputs per task's test set (default 50)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="TASK=FOLDER",
                   help="use an existing task model (full or peft adapter folder) instead of fine-tuning")
    p.add_argument("--include-base", action="store_true", help="also compare each task model with the base model")
    p.add_argument("--out", help="output folder (default: <runs-dir>/cka-<stream>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="any setting, e.g. train.epochs=1, adapter.rank=4, stream.toy.train_per_task=300")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_analyze_cka)
    p = analyze.add_parser("blocks", help="per-block test of a hide-llava run: under oracle routing, fuse or drop "
                           "one decoder block at a time and score every task (is the block task-general?)")
    p.add_argument("run_dir", help="a hide-llava run with method.layout=expand-all (or method.fusion=paper)")
    p.add_argument("--samples-per-task", type=int, default=50, help="test samples per task (0: all; default 50)")
    p.add_argument("--fusion", choices=["code", "paper"], default="code",
                   help="how a fused block combines the experts: code = s (sum B)(sum A), paper = s sum B A")
    p.add_argument("--batch-size", type=int, default=64, help="prompts generated together")
    p.add_argument("--out", help="output folder (default: RUN_DIR/blocks)")
    p.add_argument("--updates-only", action="store_true",
                   help="only measure the size of each task's update per block; nothing generated")
    p.add_argument("--modules", help="fuse or drop only these layers of a block, comma-separated (e.g. "
                   "q_proj,k_proj,v_proj,o_proj); the others stay routed (default: every adapted layer)")
    p.set_defaults(func=cmd_analyze_blocks)

    fed = sub.add_parser("fed", help="federated continual instruction tuning on Flower (docs/federated.md)"
                         ).add_subparsers(dest="fed_command", required=True)
    from citkit.federated.commands import settings_help

    p = fed.add_parser("run", help="run a stream over federated clients (in-process Flower apps)",
                       epilog=_run_settings_help() + "\n\n" + settings_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_fed_arguments(p)
    p.set_defaults(func=cmd_fed_run)
    p = fed.add_parser("compare", help="several federated runs (methods, strategies, settings) in one table",
                       epilog=_run_settings_help() + "\n\n" + settings_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", required=True, help=(
        "comma-separated entries METHOD[:OPTION=VALUE...]; options federated.NAME=VALUE change that entry's "
        "federation, e.g. lora-ft,disco,disco:federated.setting=heterogeneous,lora-ft:federated.strategy=fedprox"))
    p.add_argument("--seeds", default=None, help="comma-separated seeds: one table of mean ± sd over them")
    _add_fed_arguments(p)
    p.set_defaults(func=cmd_fed_compare)
    p = fed.add_parser("resume", help="continue an interrupted federated run after its last finished round")
    p.add_argument("run_dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fed_resume)
    p = fed.add_parser("strategies", help="list server strategies and their options")
    p.set_defaults(func=cmd_fed_strategies)

    cil = sub.add_parser("cil", help="class-incremental learning on a ViT with LoRA (DESIRE and baselines)"
                         ).add_subparsers(dest="cil_command", required=True)
    p = cil.add_parser("run", help="run a class-incremental stream with a method")
    p.add_argument("--method", help="CIL method (default lora-ft; see `citkit cil methods`)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    _add_cil_arguments(p)
    p.set_defaults(func=cmd_cil_run)
    p = cil.add_parser("compare", help="several CIL methods over seeds: one table and a per-stage plot")
    p.add_argument("--methods", required=True, help="comma-separated methods or METHOD:OPTION=VALUE variants")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    _add_cil_arguments(p)
    p.set_defaults(func=cmd_cil_compare)
    p = cil.add_parser("pretrain", help="rebuild the tiny ViT from its seed (bit-identical), quality-gated")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_cil_pretrain)
    p = cil.add_parser("methods", help="list CIL methods and their options")
    p.set_defaults(func=cmd_cil_methods)

    p = sub.add_parser("streams", help="list known streams")
    p.set_defaults(func=cmd_streams)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except CitkitError as error:
        print(f"citkit: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("citkit: interrupted; `citkit resume RUN_DIR` continues after the last finished task", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
