"""The files of deploy/ (docs/deploy.md): systemd units that systemd accepts, an example env file
whose every name is a setting the service reads, the unit's guard against a placeholder
secret, the nightly backup's rotation, and the Mosquitto configuration, run."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from walkout.service.db import make_engine, upgrade
from walkout.service.settings import ServiceSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WALKOUT = Path(sys.executable).parent / "walkout"  # the console script of this environment
#: variables of the env file that are not service settings: the unit's command line, the
#: backup script's
NOT_SETTINGS = {"WALKOUT_SOURCE", "WALKOUT_PORT", "WALKOUT_BACKUP_DIR", "WALKOUT_BACKUP_KEEP"}


def _env_file(commented: bool) -> dict[str, str]:
    """The example env file's assignments (with ``commented``: the commented-out ones too)."""
    pat = re.compile(r"^(#)?(WALKOUT_[A-Z0-9_]+)=(.*)$")
    out = {}
    for line in (DEPLOY / "walkout.env.example").read_text().splitlines():
        m = pat.match(line)
        if m and (commented or not m.group(1)):
            out[m.group(2)] = m.group(3)
    return out


def test_every_name_in_the_env_file_is_read_by_someone() -> None:
    """A misspelt name is refused by the service; the others must be let pass by it."""
    from walkout.service.settings import OTHER_VARIABLES

    names = set(_env_file(commented=True))
    fields = {f"WALKOUT_{f.upper()}" for f in ServiceSettings.model_fields}
    assert names - fields <= NOT_SETTINGS, names - fields - NOT_SETTINGS
    assert NOT_SETTINGS <= OTHER_VARIABLES
    assert {"WALKOUT_DB_URL", "WALKOUT_ENTRY_SECRET", "WALKOUT_STORE"} <= names
    unit = (DEPLOY / "walkout.service").read_text()
    assert set(re.findall(r"\$\{(WALKOUT_[A-Z_]+)\}", unit)) <= set(_env_file(commented=False))


def _made(value: str) -> str:
    """What the operator puts in place of a CHANGE-ME placeholder (the unit refuses to start
    with one): a value made as docs/deploy.md says, with the placeholder's prefix."""
    if "CHANGE-ME" not in value:
        return value
    return value.split("CHANGE-ME")[0] + "q8Yl2rVv1Xo0fJx3bq7mWw5s9KpTzN4uHcE6aD1gLrQ"


def test_the_env_file_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """As systemd hands it over, its placeholders made; then every commented-out setting
    switched on too. Every other WALKOUT_ name in it is one the settings let pass."""
    for name in [n for n in os.environ if n.startswith("WALKOUT_")]:
        monkeypatch.delenv(name)
    for commented in (False, True):
        env = {k: _made(v) for k, v in _env_file(commented).items()}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        try:
            s = ServiceSettings()
        except ValidationError as e:
            pytest.fail(f"deploy/walkout.env.example: {e}")
        assert s.db_url == "sqlite:////var/lib/walkout/walkout.db"
        assert s.sqlite_synchronous == "FULL"
    monkeypatch.setenv("WALKOUT_ENTRY_SECRET", _env_file(False)["WALKOUT_ENTRY_SECRET"])
    with pytest.raises(ValidationError, match="WALKOUT_ENTRY_SECRET must be at least 32"):
        ServiceSettings()  # the placeholder is refused by the service too, not only the unit


def _start_guard() -> str:
    """The unit's ExecStartPre shell line, as systemd runs it (``$$`` is a literal ``$``)."""
    unit = (DEPLOY / "walkout.service").read_text()
    line = next(ln for ln in unit.splitlines() if ln.startswith("ExecStartPre="))
    m = re.fullmatch(r"ExecStartPre=/bin/sh -c '(.*)'", line)
    assert m, line
    return m.group(1).replace("$$", "$")


@pytest.mark.parametrize(("secret", "starts"), [
    (None, False), ("", False), (_env_file(False)["WALKOUT_ENTRY_SECRET"], False),
    ("q8Yl2rVv1Xo0fJx3bq7mWw5s9KpTzN4uHcE6aD1gLrQ", True)])
def test_the_unit_refuses_to_start_with_a_placeholder_secret(secret: str | None,
                                                             starts: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WALKOUT_ENTRY_SECRET"}
    if secret is not None:
        env["WALKOUT_ENTRY_SECRET"] = secret
    r = subprocess.run(["/bin/sh", "-c", _start_guard()], env=env, capture_output=True,
                       text=True, check=False)
    assert (r.returncode == 0) == starts, r.stderr
    if not starts:
        assert "set WALKOUT_ENTRY_SECRET in /etc/walkout/walkout.env" in r.stderr


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` warns of an unknown key or a bad value and still exits 0:
    its output must be empty. The executables are this checkout's (it checks they exist)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (systemd's tools)")
    subs = {"/opt/walkout/venv/bin/walkout": str(WALKOUT),
            "/usr/local/bin/walkout-backup": str(DEPLOY / "walkout-backup.sh")}
    units = []
    for name in ("walkout.service", "walkout-backup.service", "walkout-backup.timer"):
        text = (DEPLOY / name).read_text()
        for a, b in subs.items():
            text = text.replace(a, b)
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    r = subprocess.run([exe, "verify", *units], capture_output=True, text=True, check=False,
                       timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    # and the check sees a bad unit: it would catch a mistake in ours
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")
    r = subprocess.run([exe, "verify", str(bad)], capture_output=True, text=True, check=False,
                       timeout=60)
    assert (r.stdout + r.stderr).strip()


# ---- the nightly backup ----------------------------------------------------------------------


def _backup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "WALKOUT_BIN": str(WALKOUT),
            "WALKOUT_BACKUP_DIR": str(tmp_path / "backups"), **env}
    return subprocess.run([str(DEPLOY / "walkout-backup.sh")], env=full, capture_output=True,
                          text=True, check=False, timeout=120)


def test_the_backup_script_keeps_the_newest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'walkout.db'}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    backups = tmp_path / "backups"
    backups.mkdir()
    old = [f"walkout-2026010{d}T033000Z.db" for d in (1, 2, 3)]
    others = ["notes.txt", "walkout-before-upgrade.db"]  # never the script's to remove
    for name in old + others:
        (backups / name).write_text("x")
    r = _backup(tmp_path, WALKOUT_DB_URL=url, WALKOUT_BACKUP_KEEP="2")
    assert r.returncode == 0, r.stderr
    left = sorted(p.name for p in backups.iterdir())
    new = [n for n in left if n not in old + others]
    assert len(new) == 1 and re.fullmatch(r"walkout-\d{8}T\d{6}Z\.db", new[0]), left
    assert set(left) == {old[2], new[0], *others}
    assert f"wrote {backups / new[0]}" in r.stdout
    assert "removed" in r.stdout and old[0] in r.stdout


def test_a_failed_backup_rotates_nothing_away(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    old = [f"walkout-2026010{d}T033000Z.db" for d in (1, 2, 3)]
    for name in old:
        (backups / name).write_text("x")
    r = _backup(tmp_path, WALKOUT_DB_URL=f"sqlite:///{tmp_path / 'missing.db'}",
                WALKOUT_BACKUP_KEEP="1")
    assert r.returncode != 0 and "no such file" in r.stderr, r.stderr
    assert sorted(p.name for p in backups.iterdir()) == old
    r = _backup(tmp_path, WALKOUT_BACKUP_KEEP="0")
    assert r.returncode == 2 and "WALKOUT_BACKUP_KEEP must be a whole number" in r.stderr


# ---- the broker ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker() -> Iterator[tuple[int, int]]:
    """deploy/mosquitto.conf running, its addresses and paths moved into a temporary folder:
    the engine's listener on 127.0.0.1, the sensor network's on 127.0.0.2; (engine port,
    sensor port). A device G01 with password ``pw-G01``."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                         if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    passwd = shutil.which("mosquitto_passwd")
    if exe is None or passwd is None:
        pytest.skip("Mosquitto is not installed (bash scripts/services.sh start mosquitto)")
    # not under pytest's 0700 folders: the broker started as root drops to the mosquitto
    # user, which must reach its files (as scripts/services.sh does)
    tmp_path = Path(tempfile.mkdtemp(prefix="walkout-mq-deploy."))
    tmp_path.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() == 0:
        with contextlib.suppress(LookupError):  # no such user: the broker stays root
            shutil.chown(data, "mosquitto", "mosquitto")
    subprocess.run([passwd, "-c", "-b", str(tmp_path / "passwd"), "G01", "pw-G01"], check=True,
                   capture_output=True)
    acl = "\n".join(ln.removeprefix("#   ") for ln in
                    (DEPLOY / "mosquitto.conf").read_text().splitlines()
                    if ln.startswith("#   pattern "))
    (tmp_path / "acl").write_text(acl + "\n")
    for f in ("passwd", "acl"):
        (tmp_path / f).chmod(0o644)
    engine_port, sensor_port = _free_port(), _free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    for a, b in {"listener 1883 127.0.0.1": f"listener {engine_port} 127.0.0.1",
                 "listener 1883 10.20.0.1": f"listener {sensor_port} 127.0.0.2",
                 "/etc/mosquitto/walkout.passwd": str(tmp_path / "passwd"),
                 "/etc/mosquitto/walkout.acl": str(tmp_path / "acl"),
                 "/var/lib/mosquitto/": f"{data}/",
                 "pid_file /run/mosquitto/mosquitto.pid\n": "",
                 "log_dest syslog": "log_dest stderr"}.items():
        assert a in conf, a
        conf = conf.replace(a, b)
    (tmp_path / "mosquitto.conf").write_text(conf)
    log = (tmp_path / "log").open("w")
    proc = subprocess.Popen([exe, "-c", str(tmp_path / "mosquitto.conf")], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        for host, port in (("127.0.0.1", engine_port), ("127.0.0.2", sensor_port)):
            while True:
                try:
                    socket.create_connection((host, port), 0.5).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        (tmp_path / "log").read_text()
                    time.sleep(0.1)
        yield engine_port, sensor_port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _client(host: str, port: int, user: str | None = None,
            pw: str | None = None) -> tuple[mqtt.Client, ReasonCode]:
    """A paho client (MQTT 5) and the broker's answer to its CONNECT."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user:
        c.username_pw_set(user, pw)
    answered = threading.Event()
    got: list[ReasonCode] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                   props: Any) -> None:
        got.append(reason)
        answered.set()

    c.on_connect = on_connect
    c.connect(host, port)
    c.loop_start()
    assert answered.wait(10), "no answer to CONNECT"
    return c, got[0]


def test_the_broker_config_runs_as_documented(broker: tuple[int, int]) -> None:
    """The engine gets in on loopback without a password; on the sensor network only a
    device with its password, and it may publish its own topics only."""
    engine_port, sensor_port = broker
    seen: list[str] = []
    sub, reason = _client("127.0.0.1", engine_port)
    assert not reason.is_failure, reason
    subscribed = threading.Event()
    sub.on_message = lambda c, u, m: seen.append(m.topic)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("walkout/shop1/#", qos=1)
    assert subscribed.wait(10)
    anon, reason = _client("127.0.0.2", sensor_port)
    assert reason.is_failure, "an anonymous client got onto the sensor network"
    anon.loop_stop()
    bad, reason = _client("127.0.0.2", sensor_port, "G01", "wrong")
    assert reason.is_failure
    bad.loop_stop()
    dev, reason = _client("127.0.0.2", sensor_port, "G01", "pw-G01")
    assert not reason.is_failure, reason
    for topic in ("walkout/shop1/plates/G02", "walkout/shop1/receipts/s1",
                  "walkout/shop1/plates/G01"):
        dev.publish(topic, b"x", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while "walkout/shop1/plates/G01" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert seen == ["walkout/shop1/plates/G01"], seen
    for c in (dev, sub):
        c.disconnect()
        c.loop_stop()
