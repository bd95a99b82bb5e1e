"""What an OpenAI-compatible server's answers mean for a call: stop the stage, retry, or fail the one request.

Shared by the request-by-request path (``openai_server``) and the Batch API (``batch_api``).
"""

from __future__ import annotations

from ecd.errors import EcdError
from ecd.params import ModelParams

#: statuses that no retry and no other request can fix: the stage stops at once
STOP_STATUSES = {401: "authentication failed (check the key variable)", 403: "permission denied",
                 404: "not found (check base_url and the model name)"}
#: statuses that a later try may not meet: timeouts, conflicts, rate limits (and every 5xx)
RETRY_STATUSES = {408, 409, 429}


def unreachable(p: ModelParams, detail: object) -> EcdError:
    """The one-line error for a server that no retry reached."""
    return EcdError(f"cannot reach {p.base_url} after {p.max_retries + 1} tries: {detail}")
