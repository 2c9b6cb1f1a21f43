"""`synctec-webhooks`: the one console entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synctec_webhooks.accounts import DEFAULT_ACCOUNT, account_id_problem
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import ConfigError

if TYPE_CHECKING:
    from synctec_webhooks.accounts import Account
    from synctec_webhooks.producers.subscriptions import Resealed, SubscriptionWriter


def _settings() -> Settings:
    return Settings.from_env()


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, separators=(", ", ": ")), flush=True)


# --- workers ----------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from synctec_webhooks.cli.process import (
        install_stop_handlers,
        leave_stuck_threads,
        run_loop,
        run_workers,
        setup_logging,
    )

    setup_logging()
    settings = _settings()

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        await run_workers(settings, [args.role], stop)

    try:
        run_loop(main())
    except Exception:
        # The traceback is the message: the worker stopped on an error it cannot
        # skip, with its offsets uncommitted; a restart redoes the work.
        logging.getLogger("synctec_webhooks").exception("%s worker failed", args.role)
        return leave_stuck_threads(1)
    return leave_stuck_threads(0)


def cmd_admin(args: argparse.Namespace) -> int:
    from synctec_webhooks.admin import check_token
    from synctec_webhooks.cli.process import (
        ADMIN,
        cap_malloc_arenas,
        install_stop_handlers,
        run_workers,
        setup_logging,
    )
    from synctec_webhooks.secrets_crypto import sealing_box

    setup_logging()
    settings = _settings()
    check_token(settings.admin_token)  # before connecting to anything
    sealing_box(settings)  # it seals new secrets: never with a key the workers lack

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        await run_workers(settings, [ADMIN], stop)

    # Its readers' threads would each keep an arena of freed memory (docs/benchmarks.md).
    cap_malloc_arenas()
    asyncio.run(main())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from synctec_webhooks.cli.run import run_all

    return run_all(json_output=args.json, data_dir=Path(args.data_dir) if args.data_dir else None)


def cmd_broker(args: argparse.Namespace) -> int:
    from synctec_webhooks.localkafka import main_broker

    return main_broker(
        json_output=args.json,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        fetch_only=args.fetch_only,
        nodes=args.nodes,
    )


# --- producing --------------------------------------------------------------------


def _account_problem(account: str | None) -> str | None:
    """The error line for a bad `--account`, or None."""
    problem = None if account is None else account_id_problem(account)
    return None if problem is None else f"error: --account: {problem}"


def _in_account(events: list[object], account: str | None) -> list[object]:
    """Events without an "account_id", given none with --account, go to the default
    account: the walk-through in the README needs no account. (The library has no such
    default: a sync service must say whose event it is.)"""
    from synctec_webhooks.events import ACCOUNT_FIELD

    if account is not None:
        return events
    return [
        {**e, ACCOUNT_FIELD: DEFAULT_ACCOUNT}
        if isinstance(e, dict) and ACCOUNT_FIELD not in e
        else e
        for e in events
    ]


def cmd_emit(args: argparse.Namespace) -> int:
    from synctec_webhooks.errors import InvalidEvent
    from synctec_webhooks.events import parse_events_json
    from synctec_webhooks.producers.events import EventProducer

    text = sys.stdin.read() if args.event in (None, "-") else args.event
    try:
        events = _in_account(parse_events_json(text), args.account)
        if not events:
            raise InvalidEvent("input", "no event given: pass one JSON object, or NDJSON on stdin")
        producer = EventProducer(_settings())
        # Validates all first: one bad event, none sent. --account and an event's own
        # "account_id" must agree.
        ids = producer.emit_many(events, args.account)
        producer.flush()
    except InvalidEvent as exc:
        print(f"error: {exc}; nothing was sent", file=sys.stderr)
        return 2
    for event_id in ids:
        print(event_id)
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from synctec_webhooks.producers.subscriptions import SubscriptionWriter

    problem = _account_problem(getattr(args, "account", None))
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    settings = _settings()
    writer = SubscriptionWriter(settings)
    if args.action == "add":
        return _add_webhook(writer, settings, args)
    if args.action == "list":
        return _list_webhooks(writer, args.account, args.json)
    if args.action == "reseal":
        return _reseal(writer.reseal(), args.json)
    found = [s for s in writer.list() if s.id == args.id]
    if not found:
        print(f"error: no webhook {args.id}; see 'synctec-webhooks webhooks list'", file=sys.stderr)
        return 1
    writer.remove(args.id, known=True)
    _audit(settings, found[0].account_id, "webhook.deleted", args.id)
    print(f"removed {args.id}")
    return 0


def _account(settings: Settings, account_id: str) -> Account | None:
    """The account as the accounts topic has it now (the default one always exists)."""
    from synctec_webhooks.account_table import AccountTable
    from synctec_webhooks.serialization import make_codec

    async def read() -> Account | None:
        table = AccountTable(
            settings, make_codec(settings.schema_registry_url), client_id="cli-accounts"
        )
        await table.start()
        await table.stop()
        return table.account(account_id)

    return asyncio.run(read())


def _audit(
    settings: Settings,
    account_id: str,
    action: str,
    target_id: str | None = None,
    detail: str | None = None,
) -> None:
    """One entry on the audit trail, as the API writes for its changes; actor "cli"."""
    from synctec_webhooks import audit
    from synctec_webhooks.producers.audit import AuditWriter

    async def write() -> None:
        writer = AuditWriter(settings)
        try:
            await writer.record(account_id, action, audit.CLI, target_id, detail)
        finally:
            writer.close()

    asyncio.run(write())


def _add_webhook(writer: SubscriptionWriter, settings: Settings, args: argparse.Namespace) -> int:
    from synctec_webhooks.producers.subscriptions import InvalidSubscription
    from synctec_webhooks.webhooks import redact_url

    # The API's rules: the account must exist, and its webhook limit holds (409
    # webhook_limit there). Counted from the topics as read now: two `add`s at once may
    # both pass, as requests to two admin replicas may.
    account = _account(settings, args.account)
    if account is None:
        print(
            f"error: no account {args.account!r}: the operator creates it first "
            "(POST /api/v1/accounts, docs/accounts.md); nothing was saved",
            file=sys.stderr,
        )
        return 1
    limit = account.webhook_limit(settings.max_webhooks_per_account)
    count = sum(1 for s in writer.list() if s.account_id == account.id)
    if count >= limit:
        setting = (
            f"SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT={limit}"
            if account.max_webhooks is None
            else f"the account's max_webhooks={limit}"
        )
        print(
            f"error: account {account.id!r} has {count} webhooks, its limit ({setting}); "
            "remove one ('synctec-webhooks webhooks remove ID') or raise the limit; "
            "nothing was saved",
            file=sys.stderr,
        )
        return 1
    try:
        sub = writer.add(
            args.url,
            args.events,
            description=args.description,
            max_in_flight=args.max_in_flight,
            rate_limit=args.rate_limit,
            account_id=args.account,
        )
    except InvalidSubscription as exc:
        print(f"error: {exc}; nothing was saved", file=sys.stderr)
        return 2
    _audit(settings, sub.account_id, "webhook.created", sub.id, redact_url(sub.url, sub.url))
    if args.json:
        _print_json(
            {
                "id": sub.id,
                "account_id": sub.account_id,
                "url": sub.url,
                "events": list(sub.events),
                "secret": sub.secret,
            }
        )
    else:
        print(
            f"webhook {sub.id} of account {sub.account_id} -> {sub.url} for {', '.join(sub.events)}"
        )
        print(f"secret (shown once, keep it to verify signatures): {sub.secret}")
    return 0


def _list_webhooks(writer: SubscriptionWriter, account: str | None, json_output: bool) -> int:
    from synctec_webhooks.admin.views import webhook_view
    from synctec_webhooks.webhooks import redact_url

    subs = [s for s in writer.list() if account is None or s.account_id == account]
    for s in subs:
        if json_output:
            # The API's view (never the secret), with the account as the API shows it.
            _print_json({**webhook_view(s), "account_id": s.account_id})
        else:
            state = "" if s.enabled else f"  (disabled: {s.disabled_reason})"
            print(
                f"{s.id}  {s.account_id}  {redact_url(s.url, s.url)}  {','.join(s.events)}{state}"
            )
    if not subs and not json_output:
        where = f" in account {account}" if account is not None else ""
        print(f"no webhooks yet{where}: synctec-webhooks webhooks add --url URL --events '*'")
    return 0


def _reseal(report: Resealed, json_output: bool) -> int:
    """`webhooks reseal`'s report; exit 1 while any webhook is left that no listed key opens."""
    if json_output:
        _print_json(report.as_dict())
    else:
        print(
            f"resealed {len(report.resealed)} webhooks under the first key of SYNCTEC_SECRET_KEY; "
            f"{len(report.current)} already were"
            + (f"; sealed {len(report.plain)} clear secrets" if report.plain else "")
            + (f"; {len(report.repaired)} changed meanwhile, rewritten" if report.repaired else "")
        )
    for why in report.unopened.values():
        print(f"error: {why}", file=sys.stderr)
    if report.unopened:
        print(
            f"error: {len(report.unopened)} webhooks not resealed: their deliveries are "
            "dead-lettered (secret_unavailable) until a listed key opens them; keep the old "
            "key until this reports none (docs/operations.md, 'Rotating the sealing key')",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from synctec_webhooks.admin.views import dead_letter_view
    from synctec_webhooks.deadletters.listing import Filters
    from synctec_webhooks.deadletters.replay import NOT_REPLAYABLE, DeadLetters
    from synctec_webhooks.serialization import make_codec

    problem = _account_problem(args.account)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    ids = frozenset(args.id) if getattr(args, "id", None) else None
    filters = Filters(args.webhook, args.event_id, args.event_type, ids, account_id=args.account)
    if args.action == "replay" and filters.empty and not args.all:
        # As the API refuses an empty body: a bare `replay` must not resend everything.
        print(
            "error: give a filter (--account, --webhook, --event-id, --event-type, --id), or "
            "--all to replay every dead letter; nothing was replayed",
            file=sys.stderr,
        )
        return 2
    settings = _settings()
    dls = DeadLetters(settings, make_codec(settings.schema_registry_url))
    if args.action == "list":
        shown = 0
        for v in dls.views(filters):
            # The API's view (URL passwords masked), with the account (null: a record
            # nobody could read, which no account filter matches).
            s = {"account_id": v.record.get("account_id"), **dead_letter_view(v.summary())}
            shown += 1
            if args.json:
                _print_json(s)
            else:
                state = "replayed" if s["replayed_at"] else "dead"
                print(
                    f"{s['dead_letter_id']}  {state:8}  {s['reason']:18} "
                    f"account={s['account_id'] or '-'} webhook={s['webhook_id']} "
                    f"event={s['event_id']} attempts={s['attempts']}  {s['detail']}"
                )
        if not shown and not args.json:
            print("no dead letters")
        return 0
    report = dls.replay_report(filters, everything=args.all)
    given = [
        f"{name}={value}"
        for name, value in (
            ("account_id", args.account),
            ("webhook_id", args.webhook),
            ("event_id", args.event_id),
            ("event_type", args.event_type),
        )
        if value
    ] + ([f"{len(ids)} ids"] if ids else [])
    for account, count in sorted(report.by_account.items()):
        detail = f"{count} replayed ({', '.join(given) or 'all'})"
        _audit(settings, account, "dead_letters.replayed", None, detail)
    print(
        f"replayed {report.replayed} dead letter{'' if report.replayed == 1 else 's'}"
        + "".join(
            f"; {count} not replayable: {NOT_REPLAYABLE.get(reason, reason)}"
            for reason, count in sorted(report.not_replayable.items())
        )
    )
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from synctec_webhooks.receiver import main_receive

    return main_receive(port=args.port, host=args.host, secret=args.secret, status=args.status)


# --- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synctec-webhooks",
        description="Signed webhook delivery for StoreLink sync events, on Apache Kafka.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "run", help="broker (unless KAFKA_BOOTSTRAP_SERVERS is set), all workers, admin service"
    )
    s.add_argument(
        "--json",
        action="store_true",
        help='print one JSON ready line: {"bootstrap_servers", "admin_url"[, "admin_token"]}',
    )
    s.add_argument("--data-dir", help="broker data dir (default $SYNCTEC_STATE_DIR/kafka)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("broker", help="a local Kafka broker (or cluster), in the foreground")
    s.add_argument(
        "--json", action="store_true", help='print {"bootstrap_servers": ...} when ready'
    )
    s.add_argument("--data-dir", help="keep data here across restarts (default: a temp dir)")
    s.add_argument(
        "--nodes", type=int, default=1, help="3: a cluster, replication 3, min ISR 2 (default 1)"
    )
    s.add_argument("--fetch-only", action="store_true", help="only fetch and cache the broker jars")
    s.set_defaults(func=cmd_broker)

    for role, text in (
        ("fanout", "match events to webhooks, write delivery records"),
        ("deliver", "POST delivery records to the endpoints"),
        ("retry", "retry failed deliveries when due; dead-letter the rest"),
    ):
        s = sub.add_parser(role, help=text)
        s.set_defaults(func=cmd_worker, role=role)

    s = sub.add_parser(
        "admin", help="the admin API (/api/v1) and settings page (/); needs SYNCTEC_ADMIN_TOKEN"
    )
    s.set_defaults(func=cmd_admin)

    s = sub.add_parser("emit", help="emit sync events (a JSON argument, or NDJSON on stdin)")
    s.add_argument("event", nargs="?", help="the event as JSON; '-' or absent reads stdin")
    s.add_argument(
        "--account",
        help='the account the events belong to (or "account_id" in each event; '
        f'neither: "{DEFAULT_ACCOUNT}")',
    )
    s.set_defaults(func=cmd_emit)

    s = sub.add_parser("webhooks", help="add, list, remove, reseal webhook subscriptions")
    wsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = wsub.add_parser("add", help="register a webhook; prints its id and secret")
    a.add_argument("--url", required=True)
    a.add_argument("--events", required=True, help="comma-separated event types, or '*'")
    a.add_argument("--description")
    a.add_argument("--max-in-flight", type=int, help="POSTs in flight to it per worker")
    a.add_argument("--rate-limit", type=float, help="requests per second to it per worker")
    a.add_argument(
        "--account", default=DEFAULT_ACCOUNT, help=f"the account it belongs to ({DEFAULT_ACCOUNT})"
    )
    a.add_argument("--json", action="store_true")
    a = wsub.add_parser("list", help="list webhooks, with their account")
    a.add_argument("--account", help="only this account's webhooks")
    a.add_argument("--json", action="store_true", help="one JSON object per line")
    a = wsub.add_parser("remove", help="remove a webhook (a tombstone on the topic)")
    a.add_argument("id")
    a = wsub.add_parser(
        "reseal",
        help="seal every webhook's secrets again under the first key of SYNCTEC_SECRET_KEY "
        "(key rotation); reports those no listed key opens",
    )
    a.add_argument("--json", action="store_true", help="one JSON object: ids by outcome")
    s.set_defaults(func=cmd_webhooks)

    s = sub.add_parser("dead-letters", help="list or replay dead letters")
    dsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name in ("list", "replay"):
        a = dsub.add_parser(name, help=f"{name} dead letters")
        a.add_argument("--account", help="only this account's dead letters")
        a.add_argument("--webhook", help="only this webhook id")
        a.add_argument("--event-id", help="only this event id")
        a.add_argument("--event-type", help="only this event type")
        if name == "list":
            a.add_argument("--json", action="store_true", help="one JSON object per line")
        else:
            a.add_argument("--id", action="append", help="only this dead-letter id (repeatable)")
            a.add_argument(
                "--all", action="store_true", help="every dead letter (needed without a filter)"
            )
    s.set_defaults(func=cmd_dead_letters)

    s = sub.add_parser(
        "receive", help="a local debug receiver that prints POSTs and checks signatures"
    )
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--secret", default=os.environ.get("SYNCTEC_RECEIVER_SECRET"))
    s.add_argument("--status", type=int, default=200, help="HTTP status to answer with")
    s.set_defaults(func=cmd_receive)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
