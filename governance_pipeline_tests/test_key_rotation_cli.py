"""``keys list / rotate / revoke`` and ``verify`` through the real CLI (subprocesses), on
SQLite and PostgreSQL: run, rotate, run again, verify clean; a revocation dated before the
first run's seals makes verify exit 5 with GP-KEY-010, its twin (revoked now) exits 0."""

from __future__ import annotations

from pathlib import Path

from governance_pipeline_tests.test_cli import demo, run
from governance_pipeline_tests.test_sink_confinement import (  # noqa: F401 - world: a fixture
    _check,
    _csv,
    _refused,
    world,
)


def keys(home: Path, db_url: str, *args: str, **env: str) -> dict:
    result = run(home, "keys", *args, "--json", db_url=db_url, **env)
    assert result.code == 0, result.err + result.out
    return result.json()


def test_run_rotate_run_verifies_and_keys_list_shows_both_keys(tmp_path: Path,
                                                               db_url: str) -> None:
    home = tmp_path / "home"
    demo(home, db_url)
    first = keys(home, db_url, "list")["keys"]
    assert [(k["status"], k["pinned"]) for k in first] == [("active", True)]
    old_id = first[0]["key_id"]
    rotated = keys(home, db_url, "rotate", "--actor", "ops")
    assert rotated["old_key_id"] == old_id != rotated["new_key_id"]
    demo(home, db_url)
    verified = run(home, "verify", "--json", db_url=db_url)
    assert verified.code == 0, verified.out + verified.err
    assert {k["key_id"] for k in verified.json()["keyring"]} == {old_id, rotated["new_key_id"]}
    listed = {k["key_id"]: k for k in keys(home, db_url, "list")["keys"]}
    old, new = listed[old_id], listed[rotated["new_key_id"]]
    assert (old["status"], old["retired_at"], old["successor"]) == (
        "retired", rotated["rotated_at"], new["key_id"])
    assert (new["status"], new["active_from"], new["trusted"], new["pinned"]) == (
        "active", rotated["rotated_at"], True, False)
    assert new["private_key"] == str(home / "keys" / "ledger_ed25519.pem")
    assert len(new["fingerprint"]) == 64 and new["fingerprint"].startswith(new["key_id"])
    human = run(home, "keys", "list", db_url=db_url)
    assert human.code == 0 and "retired" in human.out and "linked" in human.out
    log = run(home, "audit-log", "--action", "keys.rotate", "--json", db_url=db_url)
    assert log.code == 0, log.err
    assert "keys.rotate" in log.out and old_id in log.out


def test_a_revocation_before_the_first_seals_fails_verify_and_one_dated_now_does_not(
        tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    demo(home, db_url)
    old_id = keys(home, db_url, "list")["keys"][0]["key_id"]
    keys(home, db_url, "rotate")
    refused = run(home, "keys", "revoke", old_id, "--reason", "x", "--at", "2999-01-01T00:00:00Z",
                  db_url=db_url)
    assert refused.code == 2 and refused.err.startswith("error GP-KEY-012")
    # The twin, in an independent home (SQLite): revoked from now, the history stays valid.
    twin, twin_db = tmp_path / "twin", f"sqlite:///{tmp_path / 'twin' / 'landscape.db'}"
    demo(twin, twin_db)
    twin_old = keys(twin, twin_db, "list")["keys"][0]["key_id"]
    keys(twin, twin_db, "rotate")
    keys(twin, twin_db, "revoke", twin_old, "--reason", "routine")
    assert run(twin, "verify", db_url=twin_db).code == 0
    revoked = keys(home, db_url, "revoke", old_id, "--reason", "stolen",
                   "--at", "2000-01-01T00:00:00Z")
    assert revoked["key_id"] == old_id and revoked["revoked_at"].startswith("2000-01-01")
    result = run(home, "verify", "--json", db_url=db_url)
    assert result.code == 5, result.out + result.err
    doc = result.json()
    assert doc["problem"]["code"] == "GP-KEY-010"
    seals = [f for f in doc["findings"] if f["table"] == "ledger_seals"]
    assert seals and all(f["check"] == "key" and "revoked at 2000-01-01" in f["message"]
                         for f in seals)


def test_the_private_key_may_live_outside_the_home(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    secret = tmp_path / "secrets" / "ledger.pem"
    env = {"GOVERNANCE_SIGNING_KEY_FILE": str(secret)}
    result = run(home, "demo", "--json", db_url=db_url, **env)
    assert result.code == 0, result.err
    assert secret.exists() and not (home / "keys" / "ledger_ed25519.pem").exists()
    listed = keys(home, db_url, "list", **env)["keys"]
    assert listed[0]["private_key"] == str(secret)
    rotated = keys(home, db_url, "rotate", **env)
    assert rotated["new_key_file"] == str(secret)
    assert run(home, "demo", db_url=db_url, **env).code == 0
    assert run(home, "verify", db_url=db_url, **env).code == 0
    public = run(home, "keys", "public", "--json", db_url=db_url, **env).json()
    assert public["key_id"] == rotated["new_key_id"]
    assert public["private_key_path"] == str(secret)


def test_a_sink_may_not_write_onto_a_signing_key_file_outside_the_home(
        world: dict[str, Path]) -> None:
    key = world["tmp"] / "secrets" / "ledger.pem"
    env = {"GOVERNANCE_SIGNING_KEY_FILE": str(key)}
    for target in (key, Path(f"{key}.next")):
        message = _refused(world, {"out": _csv(str(target))}, "GP-SINK-006",
                           "sinks.out.options.path", env=env)
        assert "GOVERNANCE_SIGNING_KEY_FILE" in message
    _check(world, {"out": _csv("out/x.csv")}, env=env)  # the twin: an ordinary output
