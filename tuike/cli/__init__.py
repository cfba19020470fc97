"""The ``tuike`` command line (contract §5).

    tuike demo [--seed N]
    tuike run --events FILE
    tuike produce --events FILE [--broker HOST:PORT]
    tuike lag [--group GROUP] [--broker HOST:PORT] [--format table|json]
    tuike worker --clickhouse URL [--broker HOST:PORT] [--data-dir DIR] [--web-port N] [--log-format text|json]
    tuike replay [--from earliest|RFC3339]
    tuike query SQL [--format table|csv|json]
    tuike config check FILE
    tuike generate --seed N [--events N] --out FILE [--bad-lines N]
    tuike backup --to DIR; tuike restore --from DIR [--into DIR] [--force]

Every command takes ``--config FILE`` (default ``./tuike.yaml``, else built-in defaults),
``--data-dir DIR`` (default ``./tuike-data``) and ``--clickhouse URL`` (environment
``TUIKE_CLICKHOUSE``; where set, ``run`` and ``query`` use that server's ledger) and ``--broker
HOST:PORT`` (environment ``TUIKE_BROKER``, default 127.0.0.1:9092: the Kafka bootstrap server of
the streaming commands), before or after the command name.

Exit codes: 0 success; 2 bad input, with a message naming the problem (a bad configuration, a
missing or unreadable event file, rejected event lines, an SQL error); 1 anything else. Expected
errors print one message and no traceback; a traceback means a bug.

Each command group is a module of this package that registers its subcommands (run, stream,
serve, backoffice, privacy, backup, lab, insights, query, inputs); common.py holds what they share.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from engine.config import ConfigError
from topologies.protection import PseudonymsChanged
from tuike.cli import backoffice, backup, inputs, insights, lab, privacy, query, run, serve, stream
from tuike.cli.common import DEFAULT_BROKER, EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, OperationalError, UsageError, _stderr


def _common(sub: bool) -> argparse.ArgumentParser:
    """The options every command takes. On subcommands they default to SUPPRESS, so a value
    given before the command name is not overwritten by the subcommand's default."""
    p = argparse.ArgumentParser(add_help=False)
    d = (lambda v: argparse.SUPPRESS) if sub else (lambda v: v)
    p.add_argument("--config", metavar="FILE", default=d(None),
                   help="shop configuration (default ./tuike.yaml if present, else built-in defaults)")
    p.add_argument("--data-dir", metavar="DIR", default=d("tuike-data"),
                   help="state and embedded ledger (default ./tuike-data)")
    p.add_argument("--clickhouse", metavar="URL", default=d(os.environ.get("TUIKE_CLICKHOUSE") or None),
                   help="ClickHouse server ledger, e.g. clickhouse://127.0.0.1:9000/tuike (env TUIKE_CLICKHOUSE)")
    p.add_argument("--broker", metavar="HOST:PORT", default=d(os.environ.get("TUIKE_BROKER") or DEFAULT_BROKER),
                   help=f"Kafka bootstrap server of the streaming commands (env TUIKE_BROKER, default {DEFAULT_BROKER})")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuike", parents=[_common(False)],
        description="Real-time commission engine for promoter referral distribution (推客分销).")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common(True)]

    for group in (run, stream, serve, backoffice, backup, privacy, lab, insights, query, inputs):
        group.register(subs, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # clickhouse-driver logs every failed connection attempt with a traceback; the ledger turns
    # the final failure into one message, which is what the user should read
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    # aiokafka logs every failed connection; the command says it once, with what to do
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_BAD_INPUT)
    try:
        return args.func(args)
    except UsageError as exc:
        _stderr(f"tuike: {exc}")
        return EXIT_BAD_INPUT
    except ConfigError as exc:  # a section read where it is used (privacy: a secret not set)
        _stderr("tuike: bad configuration:\n" + "\n".join(f"  {p}" for p in exc.problems))
        return EXIT_BAD_INPUT
    except PseudonymsChanged as exc:
        _stderr(f"tuike: {exc}")
        return EXIT_BAD_INPUT
    except OperationalError as exc:
        _stderr(f"tuike: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _stderr("tuike: interrupted")
        return 130
    except BrokenPipeError:  # `tuike query … | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK
