"""The ui service's typed app keys (shared ones in `wharf_shared.keys`)."""

from __future__ import annotations

from wharf_shared.keys import RUNTIME
from wharf_ui.security import AUTHENTICATOR

__all__ = ["AUTHENTICATOR", "RUNTIME"]
