"""`wardflow board`: the live bed board in a browser, with a clinician's decisions one click away.

Its own process: reads the `decisions` and `page-acks` topics from the beginning (a restart
rebuilds the same state) and the worker's read-only JSON views (`/hospitals/{id}/beds/`,
`/hospitals/{id}/capacity/`), never the worker's tables; publishes clinicians' Confirm /
Reassign / Reject to `overrides`. Starlette + Jinja templates + a small plain-JS client
(server-sent events), no front-end build step.
"""
