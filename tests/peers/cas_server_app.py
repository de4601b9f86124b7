"""A CAS 2.0/3.0 server for Wharf's tests: django-mama-cas in a one-file Django project.

Runs in the SSO peers' own venv (tests/peers/requirements-sso.txt), started by
tests/support/cas_server.py as `python cas_server_app.py CONFIG.json`. The config names the
file to write its port to (it binds a free one), a folder for the SQLite database, the
services allowed (regular expressions) and the seeded users with their groups. CAS lives under
/cas/ (`/cas/login`, `/cas/serviceValidate`, `/cas/p3/serviceValidate`, `/cas/logout`); each
validation releases the attributes `mail`, `displayName` and `groups` (one element per group),
and a logout sends the services a user signed in to the single-logout POST. A test control:
`POST /users/<name>/groups` with `{"groups": [...]}` replaces a user's groups (what CAS releases
at their next sign-in).
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

urlpatterns: list[Any] = []


def attributes(user: Any, service: str) -> dict[str, Any]:
    """mama-cas's attribute callback (named in MAMA_CAS_SERVICES)."""
    return {
        "mail": user.email,
        "displayName": user.get_full_name(),
        "groups": sorted(g.name for g in user.groups.all()),
    }


def health(request: Any) -> HttpResponse:
    return HttpResponse("ok")


@csrf_exempt
def set_groups(request: HttpRequest, name: str) -> HttpResponse:
    """Test control: the user's groups become the body's `groups`."""
    from django.contrib.auth.models import Group, User

    if request.method != "POST":
        return HttpResponse(status=405)
    user = User.objects.filter(username=name).first()
    if user is None:
        return HttpResponse(status=404)
    names = [str(g) for g in json.loads(request.body)["groups"]]
    user.groups.set([Group.objects.get_or_create(name=g)[0] for g in names])
    return JsonResponse({"groups": sorted(names)})


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(config["folder"])
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(folder / "cas.sqlite3")}},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "mama_cas",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        MAMA_CAS_SERVICES=[
            {
                "SERVICE": pattern,
                "CALLBACKS": [f"{__name__}.attributes"],
                "LOGOUT_ALLOW": True,
                "PROXY_ALLOW": False,
            }
            for pattern in config["services"]
        ],
        MAMA_CAS_TICKET_EXPIRE=int(config.get("ticket_expire", 90)),
        PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
    )
    django.setup()
    urlpatterns.extend(
        [
            path("cas/", include("mama_cas.urls")),
            path("health", health),
            path("users/<str:name>/groups", set_groups),
        ]
    )

    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    for name, seed in config["users"].items():
        first, _, last = seed["name"].partition(" ")
        user = User.objects.create_user(
            name, email=seed["email"], password=seed["password"], first_name=first, last_name=last
        )
        for group in seed["groups"]:
            user.groups.add(Group.objects.get_or_create(name=group)[0])

    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_Server, handler_class=_Quiet)
    # The port for the test that started us, written whole (a rename) once we listen.
    port_file = Path(config["port_file"])
    port_file.with_suffix(".tmp").write_text(str(server.server_port))
    port_file.with_suffix(".tmp").rename(port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
