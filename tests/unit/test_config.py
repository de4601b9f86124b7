"""Settings: `WHARF_*` variables (nested with `__`), the TOML file, the typo check, masking."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from wharf_shared.config import (
    ConfigError,
    Settings,
    known_variables,
    load_settings,
    masked,
    unknown_variables,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WHARF_* variable at all (not even the test harness's own WHARF_TEST_*)."""
    for name in list(os.environ):
        if name.upper().startswith("WHARF_"):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "wharf.toml"
    path.write_text(text)
    monkeypatch.setenv("WHARF_CONFIG_FILE", str(path))
    return path


# -- environment ---------------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings()
    assert settings.registry.auth == "token"
    assert settings.registry.port == 5000
    assert settings.storage.driver == "filesystem"
    assert settings.database_url is None
    assert settings.effective_database_url == f"sqlite:///{Path('var/wharf.db').resolve()}"
    assert settings.storage_root == Path("var/storage").resolve()
    assert settings.token_realm == "http://127.0.0.1:8080/service/token"


def test_top_level_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WHARF_DATABASE_URL", "postgresql://wharf@db/wharf")
    monkeypatch.setenv("WHARF_DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("WHARF_LOG_LEVEL", "debug")
    monkeypatch.setenv("WHARF_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.database_url == "postgresql://wharf@db/wharf"
    assert settings.effective_database_url == "postgresql://wharf@db/wharf"
    assert settings.database_pool_size == 3
    assert settings.log_level == "debug"
    # data_dir relocates every embedded default at once
    assert settings.storage_root == tmp_path.resolve() / "storage"
    assert settings.token_private_key_path == tmp_path.resolve() / "token.key"
    assert settings.token_keys_path == tmp_path.resolve() / "token-keys.pem"
    assert settings.secret_key_path == tmp_path.resolve() / "secret.key"


def test_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_STORAGE__DRIVER", "filesystem")
    monkeypatch.setenv("WHARF_STORAGE__FILESYSTEM__ROOT", "/srv/wharf/blobs")
    monkeypatch.setenv("WHARF_REGISTRY__AUTH", "none")
    monkeypatch.setenv("WHARF_REGISTRY__PORT", "5001")
    monkeypatch.setenv("WHARF_TOKEN__ISSUER", "site-a")
    monkeypatch.setenv("WHARF_EXTERNAL_URL", "https://registry.example/")
    settings = load_settings()
    assert settings.storage.driver == "filesystem"
    assert settings.storage_root == Path("/srv/wharf/blobs")
    assert settings.registry.auth == "none"
    assert settings.registry.port == 5001
    assert settings.registry.host == "127.0.0.1"  # siblings keep their defaults
    assert settings.token.issuer == "site-a"
    assert settings.token.service == "wharf-registry"
    assert settings.token_realm == "https://registry.example/service/token"


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("wharf_registry__auth", "none")
    assert load_settings().registry.auth == "none"


# -- the TOML file -------------------------------------------------------------------------


def test_file_gives_the_same_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        """
log_level = "warning"
database_url = "mysql://wharf@db/wharf"

[registry]
auth = "none"
port = 6000

[storage.filesystem]
root = "/srv/blobs"
""",
        monkeypatch,
    )
    settings = load_settings()
    assert settings.log_level == "warning"
    assert settings.database_url == "mysql://wharf@db/wharf"
    assert settings.registry.auth == "none"
    assert settings.registry.port == 6000
    assert settings.storage_root == Path("/srv/blobs")


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path, 'log_level = "warning"\n[registry]\nauth = "none"\nport = 6000\n', monkeypatch)
    monkeypatch.setenv("WHARF_REGISTRY__PORT", "7000")
    monkeypatch.setenv("WHARF_LOG_LEVEL", "error")
    settings = load_settings()
    assert settings.registry.port == 7000
    assert settings.log_level == "error"
    assert settings.registry.auth == "none"  # the rest of the file's group still applies


def test_unknown_key_in_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path, "[registry]\nprot = 6000\n", monkeypatch)
    with pytest.raises(ConfigError, match="REGISTRY__PROT"):
        load_settings()


@pytest.mark.parametrize("text", ["not = toml = at all", "[registry\n"])
def test_unreadable_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    path = write_toml(tmp_path, text, monkeypatch)
    with pytest.raises(ConfigError, match="WHARF_CONFIG_FILE") as info:
        load_settings()
    assert str(path) in str(info.value)


def test_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WHARF_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="WHARF_CONFIG_FILE"):
        load_settings()


# -- typos and invalid values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["WHARF_DATABASE_ULR", "WHARF_REGISTRY__PROT", "WHARF_REGISTRY_AUTH", "WHARF_STORAGE__FILESYSTEM__RUT"],
)
def test_unknown_variable_stops_load(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)


def test_every_unknown_variable_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(tmp_path, "", monkeypatch)  # a file does not hide the check
    monkeypatch.setenv("WHARF_ZZZ", "1")
    monkeypatch.setenv("WHARF_AAA", "1")
    monkeypatch.setenv("WHARF_LOG_LEVEL", "info")
    monkeypatch.setenv("OTHER_TOOL_SETTING", "1")  # not ours: ignored
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WHARF_AAA, WHARF_ZZZ" in str(info.value)
    assert "LOG_LEVEL" not in str(info.value)
    assert "OTHER_TOOL" not in str(info.value)


def test_unknown_variables_helper() -> None:
    environ = {"WHARF_REGISTRY__AUTH": "x", "wharf_typo": "x", "PATH": "/bin", "WHARF_CONFIG_FILE": "f"}
    assert unknown_variables(environ) == ["wharf_typo"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WHARF_REGISTRY__PORT", "not-a-number"),
        ("WHARF_REGISTRY__PORT", "70000"),
        ("WHARF_REGISTRY__AUTH", "basic"),
        ("WHARF_REGISTRY__WORKERS", "0"),
        ("WHARF_STORAGE__DRIVER", "floppy"),
        ("WHARF_LOG_LEVEL", "verbose"),
        ("WHARF_TOKEN__LIFETIME_SECONDS", "0"),
        ("WHARF_DATABASE_POOL_SIZE", "0"),
    ],
)
def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("WHARF_LOG_LEVEL", "info")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert name in message
    # only the offending variable is blamed
    assert message.count("WHARF_") == 1, message


def test_liveness_key_must_outlive_its_refresh_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_REGISTRY__LIVENESS_INTERVAL_SECONDS", "2")
    monkeypatch.setenv("WHARF_REGISTRY__LIVENESS_TTL_SECONDS", "2")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "WHARF_REGISTRY__LIVENESS_TTL_SECONDS" in message
    assert "WHARF_REGISTRY__LIVENESS_INTERVAL_SECONDS" in message
    monkeypatch.setenv("WHARF_REGISTRY__LIVENESS_TTL_SECONDS", "2.5")
    registry = load_settings().registry
    assert (registry.liveness_interval_seconds, registry.liveness_ttl_seconds) == (2.0, 2.5)


# -- known_variables ------------------------------------------------------------------------


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Variable name → attribute path, for every leaf field (walked here, not by the code under test)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out.update(_leaves(info.annotation, path))
        else:
            out["WHARF_" + "__".join(path).upper()] = path
    return out


def _sample(annotation: Any, default: Any, name: str = "") -> tuple[str, Any]:
    """A valid, non-default value for a field: (as a variable, as parsed)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        choice = next((a for a in args if a != default), args[0])
        return str(choice), choice
    if typing.get_origin(annotation) is list and name in ("WHARF_TRUSTED_PROXIES", "WHARF_METRICS__ALLOW"):
        return "192.0.2.0/24, 2001:db8::/32", ["192.0.2.0/24", "2001:db8::/32"]
    if typing.get_origin(annotation) is list:
        return "http://a.test:1, http://b.test:2/", ["http://a.test:1", "http://b.test:2"]
    kind = args[0] if args else annotation
    if kind is float:
        return str(default + 1.5), default + 1.5
    if kind is bool:
        return str(not default).lower(), not default
    if kind is SecretStr:
        return "sample-secret", SecretStr("sample-secret")
    if kind is int:
        return str(default + 1), default + 1
    if kind is Path:
        return "/srv/sample", Path("/srv/sample")
    assert kind is str, f"no sample for {annotation}"
    return "sample-value", "sample-value"


def test_known_variables_cover_every_field() -> None:
    leaves = _leaves(Settings)
    known = known_variables()
    assert set(leaves) <= known
    assert "WHARF_CONFIG_FILE" in known
    assert len(leaves) > 20
    # Group names (JSON for a whole block) are known too; nothing else is.
    groups = {
        "WHARF_STORAGE",
        "WHARF_STORAGE__FILESYSTEM",
        "WHARF_STORAGE__S3",
        "WHARF_REGISTRY",
        "WHARF_TOKEN",
        "WHARF_UI",
        "WHARF_PROXY",
        "WHARF_PROXY__UPSTREAMS",
        "WHARF_JOBSERVICE",
        "WHARF_SERVING",
        "WHARF_METRICS",
    }
    assert known - set(leaves) - {"WHARF_CONFIG_FILE"} == groups


def test_every_known_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each leaf variable, set alone, reaches its field (no name is known but ignored)."""
    for name, path in _leaves(Settings).items():
        model: type[BaseModel] = Settings
        for part in path[:-1]:
            model = model.model_fields[part].annotation  # type: ignore[assignment]
        info = model.model_fields[path[-1]]
        raw, expected = _sample(info.annotation, info.default, name)
        with monkeypatch.context() as env:
            env.setenv(name, raw)
            value: Any = load_settings()
            for part in path:
                value = getattr(value, part)
            assert value == expected, name


def test_group_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_REGISTRY", '{"auth": "none", "port": 5005}')
    settings = load_settings()
    assert (settings.registry.auth, settings.registry.port) == ("none", 5005)


# -- masked ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://wharf:s3cret@db.example:5432/wharf",
            "postgresql://wharf:********@db.example:5432/wharf",
        ),
        ("mysql://root:p@ss:w0rd@127.0.0.1/wharf", "mysql://root:********@127.0.0.1/wharf"),
        ("postgresql://wharf@db/wharf", "postgresql://wharf@db/wharf"),
        ("sqlite:////var/lib/wharf/wharf.db", "sqlite:////var/lib/wharf/wharf.db"),
    ],
)
def test_masked_hides_database_password(monkeypatch: pytest.MonkeyPatch, url: str, shown: str) -> None:
    monkeypatch.setenv("WHARF_DATABASE_URL", url)
    values = masked(load_settings())
    assert values["WHARF_DATABASE_URL"] == shown


def test_masked_hides_redis_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_REDIS_URL", "redis://:hunter2@cache:6379/1")
    values = masked(load_settings())
    assert values["WHARF_REDIS_URL"] == "redis://:********@cache:6379/1"
    assert "hunter2" not in repr(values)


def test_masked_lists_every_setting() -> None:
    values = masked(load_settings())
    assert set(values) == set(_leaves(Settings))
    assert values["WHARF_REGISTRY__PORT"] == "5000"
    assert values["WHARF_DATABASE_URL"] is None
    assert values["WHARF_STORAGE__DRIVER"] == "filesystem"


# -- proxy pools ----------------------------------------------------------------------------


def test_upstream_pools_from_the_file_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(
        tmp_path,
        '[proxy.upstreams]\nregistry = ["http://127.0.0.2:5000/", "http://127.0.0.3:5000"]\nui = []\n',
        monkeypatch,
    )
    settings = load_settings()
    assert settings.proxy.upstreams.registry == ["http://127.0.0.2:5000", "http://127.0.0.3:5000"]
    assert settings.proxy.upstreams.token == ["http://127.0.0.1:8082"]  # the default
    assert settings.proxy.upstreams.ui == []
    monkeypatch.setenv("WHARF_PROXY__UPSTREAMS__TOKEN", " http://10.0.0.1:8082 ,http://10.0.0.2:8082,")
    assert load_settings().proxy.upstreams.token == ["http://10.0.0.1:8082", "http://10.0.0.2:8082"]


def test_an_upstream_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_PROXY__UPSTREAMS__REGISTRY", "127.0.0.2:5000")
    with pytest.raises(ConfigError, match="WHARF_PROXY__UPSTREAMS__REGISTRY"):
        load_settings()


def test_the_upstreams_file_is_the_one_source_of_the_pools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With WHARF_PROXY__UPSTREAMS_FILE the pools come from that file alone: a pool also named
    by the environment (or WHARF_CONFIG_FILE) stops start-up rather than be silently ignored."""
    monkeypatch.setenv("WHARF_PROXY__UPSTREAMS_FILE", str(tmp_path / "upstreams.toml"))
    assert load_settings().proxy.upstreams_file == tmp_path / "upstreams.toml"
    monkeypatch.setenv("WHARF_PROXY__UPSTREAMS__TOKEN", "http://10.0.0.1:8082")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WHARF_PROXY__UPSTREAMS_FILE names the pools, and so does WHARF_PROXY__UPSTREAMS__TOKEN" in str(
        info.value
    )
    monkeypatch.delenv("WHARF_PROXY__UPSTREAMS__TOKEN")
    write_toml(tmp_path, '[proxy.upstreams]\nregistry = ["http://127.0.0.2:5000"]\n', monkeypatch)
    with pytest.raises(ConfigError, match="WHARF_PROXY__UPSTREAMS__REGISTRY"):
        load_settings()
