"""Rules for user accounts that every surface applies alike (the management API, the `wharf`
CLI): what a username, an email, a profile and a password may be. Each refusal is a domain
error whose message is written for the person who typed the value."""

from __future__ import annotations

import re

from wharf_shared.errors.domain import InvalidInput
from wharf_shared.passwords import PASSWORD_RULE, meets_policy

# Harbor's limits: names without characters that break its other surfaces; the columns' sizes.
_BAD_NAME_CHARS = set(',"~#%$:/\\ ') | {chr(c) for c in range(32)} | {"\x7f"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_NAME = 255
MAX_EMAIL = 255
MAX_REALNAME = 255
MAX_COMMENT = 1024
# Harbor's project names: lower case, digits and single separators, as a repository component.
PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def check_username(username: str) -> None:
    if not username or len(username) > MAX_NAME:
        raise InvalidInput(f"username must be 1 to {MAX_NAME} characters long")
    if any(c in _BAD_NAME_CHARS for c in username):
        raise InvalidInput('username must not contain spaces, control characters or any of ,"~#%$:/\\')


def check_profile(email: str | None, realname: str | None, comment: str | None) -> None:
    if email is not None and email != "" and (len(email) > MAX_EMAIL or not _EMAIL.match(email)):
        raise InvalidInput(f"email {email[:80]!r} is not a valid email address")
    if realname is not None and len(realname) > MAX_REALNAME:
        raise InvalidInput(f"realname must be at most {MAX_REALNAME} characters long")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidInput(f"comment must be at most {MAX_COMMENT} characters long")


def check_password(password: str) -> None:
    if not meets_policy(password):
        raise InvalidInput(PASSWORD_RULE)


def check_project_name(name: str) -> None:
    if len(name) > MAX_NAME or not PROJECT_NAME.fullmatch(name):
        raise InvalidInput(
            "project names are lower-case letters and digits, separated by single . _ or -"
            f" (at most {MAX_NAME} characters)"
        )
