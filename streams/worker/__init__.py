"""The Faust worker: the app and its agents, the tuned transport, broker security, topic creation
and the `wardflow worker` entry point."""
