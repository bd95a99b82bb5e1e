"""Client-side rate limits for hosted teachers: requests and tokens per minute, and the server's word.

A long run against a hosted API should neither trip its limits (every 429 costs a wait and a retry)
nor idle below them. ``RateLimiter`` spaces requests so that no rolling minute holds more than
``requests_per_minute`` requests or ``tokens_per_minute`` tokens (a request is charged its prompt's
estimated tokens plus ``max_new_tokens`` up front, then corrected to the usage the server reports),
and pauses every worker when the server's own ``x-ratelimit-remaining-*`` headers say the budget is
spent, until their ``x-ratelimit-reset-*`` time. ``Retry-After`` on a 429 is honoured by the
``openai`` client's own retries, which ecd leaves on.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` header: ``"1s"``, ``"6m0s"``, ``"20ms"`` or a plain number."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def estimate_tokens(text: str) -> int:
    """A prompt's tokens, roughly (four characters a token), for charging a request before it is sent."""
    return len(text) // 4 + 1


@dataclass(eq=False)
class Charge:
    """One request's place in the window: when it left and the tokens it is charged."""

    at: float
    tokens: int
    expired: bool = False


class RateLimiter:
    """Waits before each request until it fits the caps over the last 60 seconds."""

    WINDOW = 60.0

    def __init__(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None) -> None:
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self._sent: deque[Charge] = deque()  # the requests of the last minute, oldest first
        self._tokens = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def _expire(self, now: float) -> None:
        while self._sent and now - self._sent[0].at >= self.WINDOW:
            gone = self._sent.popleft()
            gone.expired = True
            self._tokens -= gone.tokens

    def _wait(self, now: float, tokens: int) -> float:
        """Seconds until a request of ``tokens`` fits (0: now)."""
        wait = max(0.0, self._paused_until - now)
        if self.rpm and len(self._sent) >= self.rpm:
            wait = max(wait, self._sent[len(self._sent) - self.rpm].at + self.WINDOW - now)
        if self.tpm and self._tokens + tokens > self.tpm and self._sent:
            # the earliest moment enough of the window's tokens have expired
            freed, need = 0, self._tokens + tokens - self.tpm
            for c in self._sent:
                freed += c.tokens
                if freed >= need:
                    wait = max(wait, c.at + self.WINDOW - now)
                    break
        return wait

    def _min_spacing(self) -> float:
        """Even spacing under the request cap, so that a window's requests do not all leave at once."""
        return self.WINDOW / self.rpm if self.rpm else 0.0

    async def acquire(self, tokens: int) -> Charge | None:
        """Wait for room, then record the request; returns its charge, to correct with ``settle``
        (None without caps: then only a pause the server asked for is waited out)."""
        if not self.active:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            return None
        if self.tpm:
            tokens = min(tokens, self.tpm)  # one request larger than the cap would otherwise wait forever
        async with self._lock:  # one waiter at a time keeps requests in order and the spacing exact
            while True:
                now = time.monotonic()
                self._expire(now)
                wait = self._wait(now, tokens)
                if self._sent and self.rpm:
                    wait = max(wait, self._sent[-1].at + self._min_spacing() - now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            charge = Charge(now, tokens)
            self._sent.append(charge)
            self._tokens += tokens
            return charge

    def settle(self, charge: Charge, used: int) -> None:
        """Replace a request's estimated tokens by what the server says it used."""
        if used > 0 and not charge.expired:
            self._tokens += used - charge.tokens
            charge.tokens = used

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pause everyone when the server says its requests or tokens are spent, until its reset."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is not None and reset is not None and remaining.strip() == "0":
                self._paused_until = max(self._paused_until, time.monotonic() + reset)
