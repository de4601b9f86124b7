"""The job service's typed app keys."""

from __future__ import annotations

from aiohttp import web

from wharf_jobservice.audit_file import AuditFile
from wharf_jobservice.consumer import StreamConsumer

CONSUMER = web.AppKey("consumer", StreamConsumer)
AUDIT_FILE = web.AppKey("audit_file", AuditFile)  # only when WHARF_JOBSERVICE__AUDIT_FILE is set
