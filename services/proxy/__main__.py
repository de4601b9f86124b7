"""`wharf-proxy` / `python -m wharf_proxy`: the one front door."""

from __future__ import annotations

import ssl
import sys

from wharf_proxy.upstreams_file import Snapshot, UpstreamsFileError, initial_pools
from wharf_shared.config import ConfigError, Settings, load_settings
from wharf_shared.logging import configure_logging
from wharf_shared.procmetrics import use_multiprocess_metrics
from wharf_shared.service_cli import parse_service_args


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    proxy = settings.proxy
    if proxy.tls_cert_file is None and proxy.tls_key_file is None:
        return None
    if proxy.tls_cert_file is None or proxy.tls_key_file is None:
        raise ConfigError("WHARF_PROXY__TLS_CERT_FILE and WHARF_PROXY__TLS_KEY_FILE go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(proxy.tls_cert_file, proxy.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from exc
    return context


def _initial_pools(settings: Settings) -> Snapshot:
    """Read before `configure_logging`, so an upstreams file that will not do stops start-up
    with its reason, as a bad setting does; its name says which file."""
    try:
        return initial_pools(settings)
    except UpstreamsFileError as exc:
        raise UpstreamsFileError(
            f"WHARF_PROXY__UPSTREAMS_FILE={settings.proxy.upstreams_file}: {exc}"
        ) from exc


def main() -> None:
    parse_service_args(
        "proxy", "Serve the one front door: `/v2/` to the registries, `/service/token` to the token services."
    )
    try:
        settings = load_settings()
        context = tls_context(settings)
        upstreams = _initial_pools(settings)
    except (ConfigError, UpstreamsFileError) as exc:
        print(f"wharf-proxy: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    configure_logging(settings.log_level, "proxy")
    proxy = settings.proxy
    if proxy.workers > 1:
        use_multiprocess_metrics("proxy")
    from wharf_proxy.app import create_app
    from wharf_proxy.board import Board
    from wharf_shared.serving import run

    # The workers' shared verdicts: made before the fork, sized for every pool the file may list.
    board = Board.for_settings(settings, upstreams.lists)
    run(
        lambda: create_app(settings, board=board, upstreams=upstreams, reload_signal=True),
        proxy.host,
        settings.http_port,
        proxy.workers,
        ssl_context=context,
        shutdown_timeout=proxy.drain_seconds,
        forward_hup=True,  # systemd's ExecReload, `supervisorctl signal HUP`: re-read the pools
    )


if __name__ == "__main__":
    main()
