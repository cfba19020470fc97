"""A person's data: ``tuike reveal``, ``tuike forget``; ``tuike keys rotate`` and ``tuike retention``
(README: personal data)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tuike.cli.common import EXIT_OK, OperationalError, UsageError, _load_config, _open_ledger


def register(subs: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    for name, text in (("reveal", "print a person's sealed values (PIPL Art. 45: a subject access request)"),
                       ("forget", "destroy a person's data keys and delete what can be deleted (PIPL Art. 47); "
                                  "the ledger's money stays")):
        p = subs.add_parser(name, parents=common, help=text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--customer", metavar="ID", help="a customer id (or visitor id) as the shop knows it")
        who.add_argument("--promoter", metavar="ID", help="a promoter id as the shop knows it")
        p.set_defaults(func=cmd_reveal if name == "reveal" else cmd_forget)

    p = subs.add_parser("keys", parents=common, help="the data keys' vault")
    ksubs = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = ksubs.add_parser("rotate", parents=common,
                         help="wrap every data key with the first of privacy.master_keys (then the older ones can go)")
    k.set_defaults(func=cmd_keys_rotate)

    p = subs.add_parser("retention", parents=common,
                        help="delete clicks, dead letters and dashboard audit rows past their retention (README: retention)")
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    p.set_defaults(func=cmd_retention)


def _protection(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The configured protection over the ledger's vault; refused when privacy is off."""
    from engine.config import ConfigError
    from topologies.protection import protection_for

    config = _load_config(args.config)
    if "privacy" not in config.raw:
        raise UsageError("privacy is off in this configuration: there are no pseudonyms or data keys "
                         "(add a `privacy:` section to tuike.yaml; README: personal data)")
    ledger = _open_ledger(args.clickhouse, Path(args.data_dir))
    try:
        return protection_for(config.raw, ledger)
    except ConfigError as exc:
        ledger.close()
        raise UsageError(f"privacy: {exc}") from None


def cmd_reveal(args: argparse.Namespace) -> int:
    from sinks.vault import VaultError
    from tuike.backoffice.privacy import reveal

    protection = _protection(args)
    try:
        rows = reveal(protection, args.customer or args.promoter)
    except VaultError as exc:
        raise OperationalError(str(exc)) from None
    finally:
        protection.vault.ledger.close()
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    from sinks.vault import VaultError
    from tuike.backoffice.privacy import forget

    protection = _protection(args)
    person = args.customer or args.promoter
    try:
        done = forget(protection, person)
    except VaultError as exc:
        raise OperationalError(str(exc)) from None
    finally:
        protection.vault.ledger.close()
    print(f"forgot {'customer' if args.customer else 'promoter'} {protection.person(person)}: "
          f"{done.keys} data keys destroyed, {done.fact_rows} fact rows' sealed values cleared, "
          f"{done.dead_letters} dead letters deleted; the ledger's money is kept (会计档案)")
    return EXIT_OK


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    protection = _protection(args)
    try:
        n = protection.vault.rotate()
    finally:
        protection.vault.ledger.close()
    print(f"{n} data keys wrapped with master key {protection.vault.masters[0].id}; "
          "the older master keys can now be removed from privacy.master_keys")
    return EXIT_OK


def cmd_retention(args: argparse.Namespace) -> int:
    import time

    from engine.config import ConfigError
    from tuike.backoffice.retention import apply_retention, expired, retention_days

    try:
        days = retention_days(_load_config(args.config).raw)
    except ConfigError as exc:
        raise UsageError(f"bad configuration: {exc}") from None
    ledger = _open_ledger(args.clickhouse, Path(args.data_dir))
    try:
        found = expired(ledger, days, time.time())
        for e in found:
            cut = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.before))
            print(f"{e.table:16} keep {days[e.table]} days: {e.rows:,} rows before {cut} UTC"
                  f"{'' if args.dry_run else ' deleted'}")
        if not args.dry_run:
            apply_retention(ledger, found)
    finally:
        ledger.close()
    return EXIT_OK
