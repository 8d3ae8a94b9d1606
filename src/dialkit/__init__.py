"""dialkit application wiring: settings, database, live-call registry, HTTP server and CLI.

This package assembles the `media` and `ai` packages into a running server. Nothing in
`media` or `ai` imports from here; they receive their collaborators through small
protocols (see `media.ports`).
"""

__version__ = "0.1.0"
