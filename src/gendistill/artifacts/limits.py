"""The server's connection limits, in a module with no dependency so that the CLI can show them as its defaults
without importing the serving extras (fastapi, uvicorn)."""

from __future__ import annotations

# A connection that has not sent a whole request head this long after it opened or after its last answer is closed.
DEFAULT_IDLE_TIMEOUT = 5.0
# A request whose head is in must be read and answered within this many seconds, or its connection is closed (a body
# trickled a byte at a time). A full batch (256 texts of 10,000 characters) is answered in well under a second.
DEFAULT_REQUEST_TIMEOUT = 30.0
# Open connections at most; well under the usual soft limit of 1024 file descriptors.
DEFAULT_MAX_CONNECTIONS = 512
# Seconds a cascade waits for its fallback before answering the student's own label, flagged; under the request
# timeout, so that a slow fallback degrades the answer instead of losing the connection.
DEFAULT_FALLBACK_TIMEOUT = 10.0
