"""The one error type of the public API."""

from __future__ import annotations

import json


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with a status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> bytes:
        return json.dumps(
            {"error": {"code": self.code, "message": self.message}}
        ).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"Content-Type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"Retry-After", str(self.retry_after).encode()))
        return headers
