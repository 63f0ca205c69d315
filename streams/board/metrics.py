"""The board's own Prometheus metrics (its own registry), served at /metrics on the board's port.

Labels are kinds, actions, outcomes and hospitals only: never a patient or a user.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BoardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.decisions = Counter("wardflow_board_decisions", "Decisions read off the decisions topic, by kind",
                                 ["kind"], registry=r)
        self.page_acks = Counter("wardflow_board_page_acks", "Page acknowledgements read", registry=r)
        self.actions = Counter("wardflow_board_actions", "Clinicians' actions on the board, by action and outcome "
                               "(published, refused_unlisted, refused_csrf, refused_stale, invalid)",
                               ["action", "outcome"], registry=r)
        for action in ("confirm", "reassign", "reject"):  # at 0 from the start: rate() and increase() see the first
            for outcome in ("published", "refused_unlisted", "refused_csrf", "refused_stale", "invalid",
                            "refused_signed_out"):
                self.actions.labels(action=action, outcome=outcome)
        self.sign_ins = Counter("wardflow_board_sign_ins", "Sign-in attempts by outcome", ["outcome"], registry=r)
        self.clients = Gauge("wardflow_board_live_clients", "Browsers following live updates", registry=r)
        self.view_errors = Counter("wardflow_board_view_errors", "Failed reads of the worker's views", registry=r)
        self.views_ok = Gauge("wardflow_board_views_up", "1 when the worker's views answered on the last read, per "
                              "hospital", ["hospital"], registry=r)
        self.queue = Gauge("wardflow_board_queue_items", "Decisions waiting for a clinician, per hospital",
                           ["hospital"], registry=r)
        self.ready = Gauge("wardflow_board_caught_up", "1 once the board has read the decisions topic to its end",
                           registry=r)
        self.push_latency = Histogram("wardflow_board_push_latency_seconds",
                                      "From a decision's broker timestamp to its change pushed to the browsers",
                                      buckets=PUSH_BUCKETS, registry=r)
