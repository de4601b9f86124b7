"""The shape every Wharf error body shares: `{"errors":[{"code","message","detail"}]}`.

OCI's errors (`oci.py`) and the HTTP layer's (`http.py`) are tables of subclasses: each class
states its code, message and status, so call sites never pick a status.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CodedError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    message: ClassVar[str] = "unknown error"
    status: ClassVar[int] = 500

    def __init__(
        self, detail: Any = None, *, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message or self.message)
        self.detail = detail
        self.text = message or self.message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.text,
            "detail": self.detail if self.detail is not None else {},
        }
