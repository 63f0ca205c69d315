"""`wardflow board` and `wardflow board-user`: serve the board with uvicorn; manage the password store."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from streams.board.settings import BoardSettings, add_board_arguments, board_settings_from_args

log = logging.getLogger(__name__)


def serve(settings: BoardSettings) -> int:
    import uvicorn

    from allocator.hospital import load_hospitals
    from streams.board.web import create_board_app

    logging.getLogger().setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per view read otherwise
    hospitals = load_hospitals(settings.hospital_config)
    log.info("board settings: %s", settings.masked())
    if settings.board_auth == "password" and not settings.board_password_file.exists():
        log.warning("no password store at %s: nobody can sign in until `wardflow board-user NAME` adds someone",
                    settings.board_password_file)
    app = create_board_app(settings, hospitals)
    config = uvicorn.Config(app, host=settings.board_host, port=settings.board_port, log_level="warning",
                            access_log=False, lifespan="on", proxy_headers=False)
    server = uvicorn.Server(config)
    print(f"WardFlow board on http://{settings.board_host}:{settings.board_port}/", file=sys.stderr, flush=True)
    server.run()
    return 0


def _board(args: argparse.Namespace) -> int:
    return serve(board_settings_from_args(args))


def _board_user(args: argparse.Namespace) -> int:
    from streams.board.auth import PasswordStore

    settings = board_settings_from_args(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if password != getpass.getpass("again: "):
            print("wardflow board-user: error: the two passwords differ", file=sys.stderr)
            return 2
    PasswordStore(settings.board_password_file).set_password(args.user, password)
    print(f"{args.user} can sign in to the board (store: {settings.board_password_file})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("board", help="the live bed board in a browser (reads decisions, publishes overrides)",
                       description="Serve the bed board: the hospital at a glance, one unit's beds, the queue of "
                                   "decisions needing a clinician with Confirm / Reassign / Reject, live over "
                                   "server-sent events. Reads the decisions topic from the beginning and the worker's "
                                   "views (--board-worker-views); only clinicians listed in the hospital config may "
                                   "act. Metrics at /metrics.")
    add_board_arguments(p)
    p.set_defaults(func=_board)

    p = sub.add_parser("board-user", help="add a board user or change their password (scrypt-hashed store)",
                       description="Add a user to the board's password store, or change their password. Signing in "
                                   "says who someone is; only clinicians listed in the hospital config may act.")
    p.add_argument("user", help="user id: the clinician id of the hospital config for those who may act")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add_board_arguments(p)
    p.set_defaults(func=_board_user)
