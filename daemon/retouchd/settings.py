"""Settings: command-line flags > RETOUCHD_* environment (nested with `__`) > TOML file > defaults.

This module only holds settings and the folder layout derived from them; nothing here does work.
"""

from __future__ import annotations

import re
import socket
import tomllib
from datetime import time as dtime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from retouchd.exceptions import ConfigError
from retouchd.messages import explain

SYSTEM_CONFIG = Path("/etc/retouchd/retouchd.toml")

BUILTIN_IGNORES = (
    "*.part", "*.partial", "*.tmp", "*.crdownload", "*.download", "~$*", ".~lock*", ".*", "Thumbs.db",
    "desktop.ini", "@eaDir", "#recycle", "#snapshot", ".sync*", "*.error.json", "lost+found",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchSettings(_Section):
    mode: Literal["auto", "events", "poll"] = "auto"
    poll_interval: float = Field(2.0, gt=0, le=3600)
    settle_time: float = Field(2.0, ge=0, le=3600)
    quiet_time: float = Field(60.0, ge=0, le=86400)
    """Events mode: a file written to but not closed since (a writer holds it open) is taken after this long
    without change, in case its close was missed."""
    rescan_interval: float = Field(300.0, gt=0)
    ignore: list[str] = Field(default_factory=list)
    """Extra glob patterns to ignore, added to the built-in list (partial downloads, system files)."""
    sidecar_wait: float = Field(30.0, ge=0, le=86400)
    """Seconds an image waits for its late `.mask.png` (rules with mask = "sidecar"); also when a mask
    without an image is reported."""


class WorkerSettings(_Section):
    devices: str = "auto"
    """`auto` (every CUDA device, else the CPU), `cpu`, or a list such as `cuda:0,cuda:1`."""
    slots_per_device: int = Field(1, ge=1, le=64)
    cpu_slots: int = Field(1, ge=1, le=256)
    cpu_threads: int = Field(0, ge=0, le=1024)
    """Threads per CPU worker for numeric libraries; 0 = cores / CPU slots."""
    queue_bound: int = Field(256, ge=1)
    max_attempts: int = Field(3, ge=1, le=100)
    retry_backoff: float = Field(30.0, ge=0)
    drain_timeout: float = Field(90.0, ge=0)
    lease_seconds: float = Field(60.0, ge=5)
    job_timeout: float = Field(3600.0, gt=0)
    overlap: bool = True
    """Let one slot at a time hold a second job, so the codec (the next job's decode, the last one's encode)
    runs while the device computes; off: one job per slot."""

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu"):
            return value
        parts = [p.strip() for p in value.split(",") if p.strip()]
        for part in parts:
            if part != "cpu" and not (part.startswith("cuda:") and part[5:].isdigit()):
                raise ValueError(f"'{part}' is not a device; use auto, cpu or a list like cuda:0,cuda:1")
        if not parts:
            raise ValueError("empty device list; use auto, cpu or a list like cuda:0,cuda:1")
        return ",".join(parts)


class LimitSettings(_Section):
    max_input_pixels: int = Field(100_000_000, ge=1)
    max_output_pixels: int = Field(400_000_000, ge=1)
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1)
    max_dimension: int = Field(65_535, ge=1)


class LogSettings(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RETOUCHD_", env_nested_delimiter="__", extra="forbid", validate_default=True,
    )

    root: Path = Path("retouch")
    inbox_dir: Path | None = None
    outbox_dir: Path | None = None
    archive_dir: Path | None = None
    failed_dir: Path | None = None
    review_dir: Path | None = None
    state_dir: Path | None = None
    database_url: str | None = None
    host_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128,
                         pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """This daemon's name in the shared database (several hosts, or several daemons on one host)."""
    path_map: dict[str, str] = Field(default_factory=dict)
    """Canonical path prefix → this host's mount point, e.g. {"/shares/photos" = "/mnt/nas/photos"}:
    paths are stored canonical, so hosts that mount a share in different places agree."""
    rule_files: list[Path] = Field(default_factory=list)
    file_mode: int = Field(0o644, ge=0, le=0o777)
    watch: WatchSettings = WatchSettings()
    workers: WorkerSettings = WorkerSettings()
    limits: LimitSettings = LimitSettings()
    log: LogSettings = LogSettings()
    engines: dict[str, str] = Field(default_factory=dict)
    """Paths of user-supplied model files by engine name, e.g. lama = "/models/big-lama.pt"."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Serve Prometheus metrics at http://metrics_address:PORT/metrics; off when unset; 0 = any free port."""
    metrics_address: str = "127.0.0.1"
    """Interface the metrics endpoint listens on; 0.0.0.0 lets a Prometheus on another host scrape it."""
    notify_socket: str | None = Field(None, validation_alias="NOTIFY_SOCKET")
    watchdog_usec: int | None = Field(None, validation_alias="WATCHDOG_USEC")
    fault_point: str | None = None
    """Test-only fault injection: `NAME` makes the process exit abruptly at that point of a job. Taken
    only from the environment of a test ($RETOUCHD_FAULT_POINT): a settings file cannot turn it on."""
    rejected_dir: Path | None = None
    """Results a person rejected (web interface or API); under root by default."""
    web_port: int | None = Field(None, ge=0, le=65535)
    """Serve the web interface at http://web_address:PORT/ from `retouchd run`; off when unset; 0 = any free port."""
    web_address: str = "127.0.0.1"
    """Interface of the web interface; any address but loopback needs `web_token`."""
    web_token: str | None = Field(None, min_length=16)
    """Secret every web request must carry (Bearer header, or the session cookie the login form sets)."""
    notify: list[str] = Field(default_factory=list)
    """Apprise URLs told about failures, new review items and a daily summary, e.g. ["ntfy://host/topic"]."""
    notify_summary_at: dtime = dtime(8, 0)
    """Local time of day ("HH:MM") the daily summary goes out; once a day, across restarts and hosts."""

    @field_validator("file_mode", mode="before")
    @classmethod
    def _octal(cls, value: Any) -> Any:
        if isinstance(value, str):
            return int(value, 8)
        return value

    @field_validator("metrics_address", "web_address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip().strip("[]")
        if not re.fullmatch(r"[A-Za-z0-9.:%-]+", value):
            raise ValueError("not an address; use an IP address such as 127.0.0.1, 0.0.0.0 or ::, or a host name")
        return value

    # Folder layout (SPEC §3): each may be set explicitly, else it lives under root.
    def _under_root(self, explicit: Path | None, name: str) -> Path:
        return (explicit if explicit is not None else self.root / name).absolute()

    @property
    def inbox(self) -> Path:
        return self._under_root(self.inbox_dir, "inbox")

    @property
    def outbox(self) -> Path:
        return self._under_root(self.outbox_dir, "outbox")

    @property
    def archive(self) -> Path:
        return self._under_root(self.archive_dir, "archive")

    @property
    def failed(self) -> Path:
        return self._under_root(self.failed_dir, "failed")

    @property
    def review(self) -> Path:
        return self._under_root(self.review_dir, "review")

    @property
    def rejected(self) -> Path:
        return self._under_root(self.rejected_dir, "rejected")

    @property
    def state(self) -> Path:
        return self._under_root(self.state_dir, "state")

    @property
    def work(self) -> Path:
        return self.state / "work"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state / 'retouchd.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml:
            sources.append(_FileSource(settings_cls, toml_file=toml))
        return tuple(sources)


TEST_ONLY = ("fault_point",)


_PATH_KEYS = ("root", "inbox_dir", "outbox_dir", "archive_dir", "failed_dir", "review_dir", "rejected_dir", "state_dir")


class _FileSource(TomlConfigSettingsSource):
    """The TOML settings file. Its relative paths are relative to that file's folder, not to wherever the
    command runs (flags and environment variables keep resolving against the working directory); it can
    never switch on a test-only setting in production."""

    def __call__(self) -> dict[str, Any]:
        data = dict(super().__call__())
        for key in TEST_ONLY:
            if key in data:
                raise ValueError(f"'{key}' is a test-only setting and cannot be set in a settings file; remove it")
        toml = self.toml_file_path
        base = Path(toml[0] if isinstance(toml, list | tuple) else toml).absolute().parent  # type: ignore[arg-type]

        def rebase(value: Any) -> Any:
            return str(base / value) if isinstance(value, str | Path) and not Path(value).is_absolute() else value

        for key in _PATH_KEYS:
            if key in data:
                data[key] = rebase(data[key])
        if isinstance(data.get("rule_files"), list):
            data["rule_files"] = [rebase(v) for v in data["rule_files"]]
        if isinstance(data.get("engines"), dict):
            data["engines"] = {k: rebase(v) for k, v in data["engines"].items()}
        return data


# Settings that also have a command-line flag; the others come only from the environment or the file.
_FLAGS = {"root": "--root", "database_url": "--database-url", "rule_files": "--rules", "log.format": "--log-format",
          "log.level": "--log-level"}


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "settings"
    if error["type"] == "extra_forbidden":
        return f"unknown setting '{key}'; check its spelling against the README's configuration table"
    value = error.get("input")
    if key == "file_mode" and isinstance(value, int) and not isinstance(value, bool) and value > 0o777:
        digits = str(value)
        hint = f'"0{digits}"' if set(digits) <= set("01234567") else '"0644"'
        return (f"invalid setting 'file_mode' = {value}: a number is read as decimal; write the mode as an octal "
                f"string, file_mode = {hint}")
    msg = explain(error, Settings)
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"invalid setting '{key}': {msg}"
    return f"invalid setting '{key}' = {value!r}: {msg}"


def _file_sets(config_file: Path, key: str) -> bool:
    """Whether the settings file sets the dotted `key` (a file that does not is no place to look)."""
    try:
        node: Any = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # unreadable or invalid: it may be the culprit
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _origin(key: str, config_file: Path | None) -> str:
    """Where the bad value can come from: only the places this key can be set."""
    env_name = "RETOUCHD_" + key.replace(".", "__").upper()
    places = [f"the {_FLAGS[key]} flag"] if key in _FLAGS else []
    places.append(f"${env_name}")
    if config_file and _file_sets(config_file, key):
        places.append(str(config_file))
    listed = places[0] if len(places) == 1 else ", ".join(places[:-1]) + " or " + places[-1]
    return f" (set by {listed})"


def load_settings(
    config_file: Path | None = None,
    *,
    env: bool = True,
    **overrides: Any,
) -> Settings:
    """Build the settings; raise ConfigError with one line naming the key on any invalid value.

    `config_file` falls back to $RETOUCHD_CONFIG (read by the CLI), then /etc/retouchd/retouchd.toml if it exists.
    """
    if config_file is None and SYSTEM_CONFIG.is_file():
        config_file = SYSTEM_CONFIG
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist; pass an existing file to --config")
    config: SettingsConfigDict = {}
    if config_file is not None:
        config["toml_file"] = config_file
    if not env:
        config["env_prefix"] = "RETOUCHD_DISABLED_"
    cls = type("Settings", (Settings,), {"model_config": {**Settings.model_config, **config}})
    try:
        settings: Settings = cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first: dict[str, Any] = dict(exc.errors()[0])
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(_describe(first) + _origin(key, config_file)) from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot read the configuration {config_file}: {exc}") from None
    return settings
