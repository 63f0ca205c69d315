"""The stages between the broker and the state: the event-time sequencer, the triage step, the
processor and its checkpoints, the state agent's positions, and the worker's metrics."""
