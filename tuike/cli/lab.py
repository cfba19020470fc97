"""Evaluations: the labelled fraud benchmark, and forecasts and recommendations measured on real
third-party data."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuike.cli.common import EXIT_OK, UsageError, _load_config


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    p = subs.add_parser("fraud", parents=common, help="fraud scoring tools")
    fsubs = p.add_subparsers(dest="fraud_command", metavar="ACTION", required=True)
    c = fsubs.add_parser("eval", parents=common,
                         help="the labelled fraud benchmark: precision, recall and false-hold rate per pattern")
    c.add_argument("--seed", type=int, default=1, help="the generated shop's seed (default 1)")
    c.set_defaults(func=cmd_fraud_eval)

    p = subs.add_parser("eval", parents=common, help="evaluations on real third-party data (tests/data/realdata, else ../shared/realdata)")
    esubs = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    c = esubs.add_parser("propagation", parents=common,
                         help="SNAP CollegeMsg: cascade size forecasts vs a naive baseline; hot nodes vs degree")
    c.add_argument("--path", default=None, help="the SNAP CollegeMsg file (default tests/data/realdata/graphs/…, else ../shared/realdata/graphs/…)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_eval_propagation)
    c = esubs.add_parser("recommend", parents=common,
                         help="UCI Online Retail: time-split hit-rate@10 and NDCG@10 vs popularity")
    c.add_argument("--path", default=None, help="the UCI Online Retail sample (default tests/data/realdata/orders/…, else ../shared/realdata/orders/…)")
    c.set_defaults(func=cmd_eval_recommend)


def cmd_fraud_eval(args: argparse.Namespace) -> int:
    from tuike.lab.fraud_eval import evaluate, print_report

    config = _load_config(args.config)
    if not config.fraud.enabled:
        raise UsageError("fraud scoring is off in this configuration (fraud.enabled: false): nothing to evaluate")
    print(f"tuike fraud eval: generating a labelled shop (seed {args.seed}) and scoring it…", file=sys.stderr)
    print_report(evaluate(args.seed, config), sys.stdout)
    return EXIT_OK


def _existing(path: str | None) -> None:
    if path and not Path(path).is_file():
        raise UsageError(f"--path {path}: no such file")


def cmd_eval_propagation(args: argparse.Namespace) -> int:
    from tuike.lab.eval_propagation import main as run

    _existing(args.path)
    return run((["--path", args.path] if args.path else []) + ["--seed", str(args.seed)])


def cmd_eval_recommend(args: argparse.Namespace) -> int:
    from tuike.lab.eval_recommend import main as run

    _existing(args.path)
    return run(["--csv", args.path] if args.path else [])
