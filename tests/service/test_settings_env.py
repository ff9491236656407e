"""The service's settings from the environment: a misspelt ``WALKOUT_*`` variable is refused with
the setting it was probably meant to be (pydantic-settings skipped it in silence, the default
stayed in force), and a secret too short to be a key is refused with how to make one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from walkout.cli import app
from walkout.service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "q8Yl2rVv1Xo0fJx3bq7mWw5s9KpTzN4uHcE6aD1gLrQ"


@pytest.mark.parametrize(("name", "meant"), [
    ("WALKOUT_RETENTION_DAY", "WALKOUT_RETENTION_DAYS"),
    ("WALKOUT_PAYMENT_PROVIDR", "WALKOUT_PAYMENT_PROVIDER"),
    ("walkout_entry_secrets", "WALKOUT_ENTRY_SECRET"),
])
def test_a_misspelt_variable_is_refused_with_the_nearest_setting(
        monkeypatch: pytest.MonkeyPatch, name: str, meant: str) -> None:
    monkeypatch.setenv(name, "7")
    with pytest.raises(ValidationError) as e:
        ServiceSettings()
    assert f"environment variable {name} is not a walkout setting (did you mean {meant}?)" \
        in str(e.value)
    assert "7" not in str(e.value).split("\n")[1]  # the value is never echoed


def test_a_variable_like_no_setting_points_to_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALKOUT_ZZZ", "1")
    with pytest.raises(ValidationError, match="WALKOUT_ZZZ is not a walkout setting "
                                              r"\(see docs/service.md"):
        ServiceSettings()


def _names_in_the_repo() -> set[str]:
    """Every WALKOUT_ name the deployment, scripts, docs and tests set or read."""
    names: set[str] = set()
    for top in ("deploy", "scripts", "docs", "tests", "src"):
        for p in (ROOT / top).rglob("*"):
            if p.is_file() and p.suffix not in (".pyc", ".png", ".npz", ".db") and p.name \
                    != Path(__file__).name:  # names misspelt on purpose
                names |= set(re.findall(r"\bWALKOUT_[A-Z0-9_]*[A-Z0-9]\b",
                                        p.read_text(errors="replace")))
    return names


def test_every_variable_the_repo_uses_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit's WALKOUT_SOURCE/PORT, the backup script's, scripts/services.sh's and the
    tests' own WALKOUT_TEST_* are not settings but must not stop the service."""
    fields = {f"WALKOUT_{f.upper()}" for f in ServiceSettings.model_fields}
    others = _names_in_the_repo() - fields
    assert {"WALKOUT_SOURCE", "WALKOUT_BACKUP_KEEP", "WALKOUT_TEST_PG_URL"} <= others
    for name in others:
        monkeypatch.setenv(name, "1")
    ServiceSettings()


@pytest.mark.parametrize("secret", ["", "a", "x" * 31])
def test_an_empty_or_short_entry_secret_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                   secret: str) -> None:
    """The HMAC key of entry codes and staff badges: '' (an env file with an unset ${VAR})
    let anyone sign a badge."""
    monkeypatch.setenv("WALKOUT_ENTRY_SECRET", secret)
    with pytest.raises(ValidationError) as e:
        ServiceSettings()
    said = str(e.value)
    assert f"WALKOUT_ENTRY_SECRET must be at least 32 characters (got {len(secret)})" in said
    assert "secrets.token_urlsafe(32)" in said


def test_an_entry_secret_of_32_characters_and_the_default_are_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WALKOUT_ENTRY_SECRET", raising=False)
    assert len(ServiceSettings().entry_secret.get_secret_value()) >= 32
    monkeypatch.setenv("WALKOUT_ENTRY_SECRET", "x" * 32)
    assert ServiceSettings().entry_secret.get_secret_value() == "x" * 32


@pytest.mark.parametrize("token", ["", "wo_a"])
def test_an_empty_or_short_bootstrap_admin_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="WALKOUT_BOOTSTRAP_ADMIN_TOKEN, when set, must "
                                              "be at least"):
        ServiceSettings(bootstrap_admin_token=SecretStr(token))
    assert ServiceSettings().bootstrap_admin_token is None  # unset: no admin is made


def test_a_secret_still_holding_the_examples_placeholder_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/walkout.env.example's admin-token placeholder is long enough to pass the length
    rule: every secret holding CHANGE-ME is refused by name."""
    example = Path(__file__).parents[2] / "deploy" / "walkout.env.example"
    admin = next(line.split("=", 1)[1] for line in example.read_text().splitlines()
                 if line.startswith("WALKOUT_BOOTSTRAP_ADMIN_TOKEN="))
    assert "CHANGE-ME" in admin and len(admin) >= 24
    with pytest.raises(ValidationError, match="WALKOUT_BOOTSTRAP_ADMIN_TOKEN still holds the "
                                              "example's CHANGE-ME placeholder"):
        ServiceSettings(bootstrap_admin_token=SecretStr(admin))
    monkeypatch.setenv("WALKOUT_ENTRY_SECRET", "CHANGE-ME-" + "x" * 32)
    with pytest.raises(ValidationError, match="WALKOUT_ENTRY_SECRET still holds"):
        ServiceSettings()


def test_serve_with_a_misspelt_variable_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALKOUT_RETENTION_DAY", "7")
    res = CliRunner().invoke(app, ["serve", "--shoppers", "1"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    out = " ".join(res.output.split())
    assert ("error: invalid settings: environment variable WALKOUT_RETENTION_DAY is not a "
            "walkout setting (did you mean WALKOUT_RETENTION_DAYS?)") in out, out


def test_serve_with_a_short_entry_secret_says_how_to_make_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALKOUT_ENTRY_SECRET", "a")
    res = CliRunner().invoke(app, ["serve", "--shoppers", "1"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "invalid setting entry_secret: WALKOUT_ENTRY_SECRET must be at least 32" in \
        " ".join(res.output.split())
    assert GOOD_SECRET not in res.output
