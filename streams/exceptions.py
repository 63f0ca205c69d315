"""Errors of the streams package; `user_facing` ones are shown as one line by the CLI."""


class StreamsError(Exception):
    """Base of errors the worker, broker, simulator and demo raise on purpose."""

    user_facing = True


class BrokerError(StreamsError):
    """The embedded broker could not be found, started or reached."""


class EventRejected(StreamsError):
    """A contract-valid event that cannot be applied (unknown bed, impossible transition...).

    It goes to dead-letters with `code` and a message naming `field`; no state changes.
    """

    def __init__(self, code: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


class ModelMissingError(StreamsError):
    """No triage model where the settings point, and running without one was not allowed."""


class ForwardingFailed(StreamsError):
    """The broker refused an event's copy to the ordered topic (the worker restarts and reads it again)."""


class CheckpointFailed(StreamsError):
    """A checkpoint's outputs and journal record were not acknowledged by the broker: nothing of its
    batch was acknowledged, so the worker restarts and applies the batch again."""
