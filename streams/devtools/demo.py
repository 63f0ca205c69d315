"""`wardflow demo`: broker, topics, worker, a simulated day, a live screen, a summary, a clean stop.

Everything the demo starts it stops again, on success, on error and on Ctrl-C: the worker
and the broker run as child processes in their own process groups and are always reaped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.live import Live

from allocator.hospital import load_hospitals
from streams.devtools import paging_report
from streams.devtools.broker import EmbeddedBroker, create_topics, free_port
from streams.devtools.demo_plots import DemoHistory, write_plots
from streams.devtools.demo_view import DemoFigures, describe_decision, render, scrape
from streams.devtools.runner import WorkerProcess, settings_env
from streams.devtools.sim_publish import publish
from streams.settings import WardflowSettings, settings_from_args
from streams.worker.app import input_topic_names, load_model, output_topic_names

log = logging.getLogger(__name__)
DEMO_MALFORMED_RATE = 0.01  # a few broken messages, to show the dead letters


def _speed(value: str) -> float:
    return 0.0 if str(value).lower() == "max" else float(value)


async def _follow_outputs(bootstrap: str, settings: WardflowSettings, figures: DemoFigures, stop: asyncio.Event,
                          paging_sent: list, history: DemoHistory) -> None:
    """Tail decisions and dead letters into the figures (and the pages, for the paging report) until told to stop."""
    consumer = AIOKafkaConsumer(settings.topic("decisions"), settings.topic("dead-letters"),
                                bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=250)
            for records in batch.values():
                for r in records:
                    body = orjson.loads(r.value)
                    if r.topic.endswith("dead-letters"):
                        figures.dead_letters_by_code[body["code"]] += 1
                        continue
                    figures.decisions_by_kind[body["kind"]] += 1
                    history.decision(body)
                    figures.recent.append(describe_decision(body))
                    del figures.recent[:-20]
                    sent = paging_report.sent_from_decision(body)
                    if sent is not None:
                        paging_sent.append(sent)
    finally:
        await consumer.stop()


async def _demo(settings: WardflowSettings, args: argparse.Namespace, broker: EmbeddedBroker,
                worker: WorkerProcess, console: Console, history: DemoHistory) -> dict:
    hospital = next(iter(load_hospitals(settings.hospital_config).values()))
    # The simulated day ends now: a day played fast from now on would be dated ahead of the broker's
    # clock, and the worker refuses events from the future (future_event).
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=args.days)
    clinical = settings.clinical_config()
    # The day and its clinicians in event time: they read each page a few simulated minutes after it goes out and
    # acknowledge it then (a share of acks lost), and repeat a suspect set when asked. Run once in memory, so their
    # replies sit in the published stream at their own event times and the demo shows, at any --speed, the
    # escalations the hospital would see (an ack sent live would reach the worker minutes of hospital time late).
    console.print("      simulating the day with its clinicians in memory (acks and repeats in event time) ...")
    model = load_model(settings)  # the worker's own model, so the worker in memory pages as the live one will
    closed_loop = await asyncio.to_thread(
        paging_report.run, hospital, seed=args.seed, start=start, days=args.days, clinical=clinical,
        ack_loss_rate=args.ack_loss_rate, malformed_rate=DEMO_MALFORMED_RATE, keep_inputs=True, model=model)
    events = closed_loop.inputs
    figures = DemoFigures(to_publish=len(events))
    stop = asyncio.Event()
    paging_sent: list = []
    follower = asyncio.create_task(_follow_outputs(broker.bootstrap, settings, figures, stop, paging_sent, history))

    def progress(sent: int, sim_at: datetime) -> None:
        figures.published, figures.sim_time = sent, sim_at.strftime("%a %H:%M")

    started = time.monotonic()
    publisher = asyncio.create_task(publish(events, bootstrap=broker.bootstrap, prefix=settings.topic_prefix,
                                            speed=_speed(args.speed), on_progress=progress, stop=stop))
    title = f"WardFlow demo: {hospital.name} ({len(hospital.beds)} beds), {args.days:g} simulated day(s)"
    live = None if args.no_live else Live(render(figures, title), console=console, refresh_per_second=2,
                                           transient=False, redirect_stdout=False)
    drained_at = None
    last_line = 0.0
    with live if live is not None else contextlib.nullcontext():
        while True:
            await asyncio.sleep(0.5)
            scrape(settings.metrics_port, figures)
            history.sample(figures.occupancy, figures.waiting)
            if live is not None:
                live.update(render(figures, title))
            elif time.monotonic() - last_line > 5:
                last_line = time.monotonic()
                console.print(f"  {figures.sim_time}: published {figures.published}/{figures.to_publish}, "
                              f"processed {int(figures.events_in)}, decisions {sum(figures.decisions_by_kind.values())}, "
                              f"dead letters {sum(figures.dead_letters_by_code.values())}")
            if not worker.running:
                raise RuntimeError(f"the worker stopped unexpectedly; see {worker.log_path}")
            if publisher.done() and figures.events_in >= figures.published:
                drained_at = time.monotonic()
                await asyncio.sleep(1.0)  # let the last decisions reach the screen
                scrape(settings.metrics_port, figures)
                if live is not None:
                    live.update(render(figures, title))
                break
    if live is None:
        console.print(render(figures, title))
    await publisher
    stop.set()
    await follower
    elapsed = (drained_at or time.monotonic()) - started
    console.print("      the same day under the rules before issue 13, in memory, for the paging report ...")
    legacy = await asyncio.to_thread(
        paging_report.run, hospital, seed=args.seed, start=start, days=args.days, clinical=clinical,
        ack_loss_rate=args.ack_loss_rate, malformed_rate=DEMO_MALFORMED_RATE, legacy=True)
    live_run = paging_report.RunResult(sent=paging_sent, scores=closed_loop.scores, truth=closed_loop.truth,
                                       occupied_bed_days=closed_loop.occupied_bed_days, until=closed_loop.until,
                                       acks_sent=closed_loop.acks_sent, acks_lost=closed_loop.acks_lost,
                                       repeats=closed_loop.repeats, extra_sets=closed_loop.extra_sets,
                                       dead_letters=figures.dead_letters_by_code)
    report = paging_report.compare(live_run, legacy, hospital=hospital, seed=args.seed, start=start, days=args.days,
                                   clinical=clinical, ack_loss_rate=args.ack_loss_rate,
                                   malformed_rate=DEMO_MALFORMED_RATE, source="the live worker on the broker")
    return {
        "events_published": figures.published, "events_processed": int(figures.events_in),
        "wall_seconds": round(elapsed, 1), "events_per_second": round(figures.events_in / elapsed, 1),
        "decisions": dict(figures.decisions_by_kind), "dead_letters": dict(figures.dead_letters_by_code),
        "latency_p50_s_at_most": figures.latency_quantile(0.5), "latency_p99_s_at_most": figures.latency_quantile(0.99),
        "patients_waiting": int(figures.waiting), "page_acks_in_the_stream": closed_loop.acks_sent,
        "paging_report": report,
    }


def _start_board(settings: WardflowSettings, workdir: Path, run_id: str):
    """The bed board on the demo's broker and worker; a fresh password for the first listed clinician."""
    import secrets

    from streams.board.auth import PasswordStore
    from streams.board.process import BoardProcess

    hospital = next(iter(load_hospitals(settings.hospital_config).values()))
    user = hospital.clinicians[0] if hospital.clinicians else "demo-clinician"
    password = secrets.token_urlsafe(12)
    store = workdir / f"board-users-{run_id}.json"
    PasswordStore(store).set_password(user, password)
    port = 8080 if _port_free(8080) else free_port()
    env = settings_env(broker_url=settings.broker_url, topic_prefix=settings.topic_prefix,
                       hospital_config=settings.hospital_config, board_port=port,
                       board_worker_views=f"http://127.0.0.1:{settings.web_port}", board_password_file=store,
                       board_audit_log=workdir / f"board-audit-{run_id}.jsonl", board_session_secret=secrets.token_urlsafe(32))
    board = BoardProcess(env=env, port=port, log_path=workdir / f"board-{run_id}.log").start()
    return board, (user, password)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_demo(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    run_id = uuid.uuid4().hex[:8]
    base = settings_from_args(args)
    workdir = Path("var/demo")
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    worker: WorkerProcess | None = None
    board = None
    previous = signal.getsignal(signal.SIGINT)
    try:
        if not (Path(base.model_path) / "triage_config.json").exists() and not base.allow_no_model:
            console.print(f"[b]0/4[/b] no triage model at {base.model_path}: building the default one "
                          "(corpus -> train -> evaluate -> export -> int8; about 10 minutes once, cached after) ...")
            from inference.build import build_default_model

            build_default_model()
        console.print("[b]1/4[/b] starting the embedded broker ...")
        broker.start()
        metrics_port = base.metrics_port if base.metrics_port else free_port()
        settings = base.model_copy(update={"broker_url": broker.url, "app_id": f"wardflow-demo-{run_id}",
                                           "metrics_port": metrics_port, "web_port": free_port()})
        console.print(f"      broker at {broker.bootstrap} (ready in {broker.ready_after_s:.2f}s)")
        console.print("[b]2/4[/b] creating topics ...")
        asyncio.run(create_topics(broker.bootstrap, input_topic_names(settings) + output_topic_names(settings),
                                  partitions=settings.topic_partitions))
        console.print("[b]3/4[/b] starting the worker (joins its group, recovers its tables) ...")
        env = settings_env(**{k: v for k, v in settings.masked().items() if k not in ("broker_password",)})
        worker = WorkerProcess(env=env, log_path=workdir / f"worker-{run_id}.log").start()
        join_s = worker.wait_ready(timeout_s=90)
        console.print(f"      worker ready after {join_s:.1f}s; metrics on http://127.0.0.1:{metrics_port}/metrics")
        board, sign_in = _start_board(settings, workdir, run_id)
        console.print(f"      bed board at [b]{board.url}/[/b] (sign in as {sign_in[0]}, password {sign_in[1]})")
        console.print("[b]4/4[/b] replaying a simulated hospital day (Ctrl-C stops everything) ...")
        history = DemoHistory()
        summary = asyncio.run(_demo(settings, args, broker, worker, console, history))
        summary["worker_ready_seconds"] = round(join_s, 1)
        summary["board_url"] = f"{board.url}/"
        console.print_json(json.dumps(summary))
        stem = workdir / f"summary-{run_id}"
        stem.with_suffix(".json").write_text(json.dumps(summary, indent=1))
        plots = write_plots(history, stem)
        console.print(f"summary: {stem.with_suffix('.json')}")
        if isinstance(plots, str):
            console.print(plots)
        else:
            console.print("plots: " + ", ".join(str(p) for p in plots))
        return 0
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping the worker and the broker ...")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        with contextlib.suppress(Exception):
            if board is not None:
                board.stop()
        with contextlib.suppress(Exception):
            if worker is not None:
                worker.stop()
        broker.stop()
        signal.signal(signal.SIGINT, previous)
        console.print("stopped: nothing left running")
