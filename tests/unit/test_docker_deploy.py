"""`invoke deploy`'s core (cloudbuilder/deploy.py) without an engine: which env file,
refusing an invalid one before anything runs, the compose call, reading `ps`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cloudbuilder import deploy
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.errors import ConfigError, EnvInvalidError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq9-canary-Secret-value"


def make_cfg(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "0", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


@pytest.fixture
def no_docker(monkeypatch):
    """Any attempt to reach docker fails the test."""
    def boom(*_a, **_k):
        raise AssertionError("docker must not be called")

    monkeypatch.setattr(deploy, "require_compose", boom)
    monkeypatch.setattr(deploy, "run_compose", boom)


def test_env_file_flag_wins_then_the_trees_env(tmp_path):
    cfg = make_cfg(tmp_path)
    with pytest.raises(ConfigError, match=r"cp .*\.env\.example .*\.env, edit it"):
        deploy.deploy_env_file(cfg)
    (tmp_path / "dist" / "docker").mkdir(parents=True)
    (tmp_path / "dist" / "docker" / ".env").write_text("X=1\n")
    assert deploy.deploy_env_file(cfg) == tmp_path / "dist" / "docker" / ".env"
    other = tmp_path / "prod.env"
    other.write_text("X=1\n")
    assert deploy.deploy_env_file(make_cfg(tmp_path, env_file=str(other))) == other


def test_invalid_env_is_refused_before_any_docker_call(tmp_path, no_docker):
    env = tmp_path / "bad.env"
    env.write_text((ROOT / "common" / ".env.example").read_text() + f"DB_PASSWORD={SECRET[:8]}\n")
    cfg = make_cfg(tmp_path, env_file=str(env))
    with pytest.raises(EnvInvalidError) as info:
        deploy.deploy_compose(cfg)
    message = str(info.value)
    for key in ("SECURITY_SALT", "DB_HOST", "FULL_BASE_URL", "DB_PASSWORD"):
        assert f"error: {key}:" in message
    assert SECRET[:8] not in message and "CHANGE_ME_db_password" not in message
    assert EnvInvalidError.exit_code == 5


def test_compose_call_uses_the_env_file_for_services_and_interpolation(tmp_path):
    env = tmp_path / "x.env"
    call = deploy.compose_call(tmp_path / "tree", env, ("up", "-d"), {"PATH": "/bin", "COMPOSE_PROJECT_NAME": "p1"})
    assert call.argv == ("docker", "compose", "--env-file", str(env.resolve()), "up", "-d")
    assert call.cwd == tmp_path / "tree"
    assert call.env == {"PATH": "/bin", "COMPOSE_PROJECT_NAME": "p1", "ORANGESCRUM_ENV_FILE": str(env.resolve())}


def ps_line(service, state="running", health="", status="Up 1 minute", code=0):
    return {"Service": service, "State": state, "Health": health, "Status": status, "ExitCode": code}


def test_parse_ps_reads_lines_and_arrays():
    rows = [ps_line("app", health="healthy"), ps_line("queue")]
    assert deploy.parse_ps("\n".join(json.dumps(r) for r in rows) + "\n") == rows
    assert deploy.parse_ps(json.dumps(rows)) == rows
    assert deploy.parse_ps("") == []


@pytest.mark.parametrize(("rows", "problems"), [
    ([ps_line("app", health="healthy"), ps_line("queue")], []),
    ([ps_line("app", health="healthy"), ps_line("queue"), ps_line("queue")], []),
    ([ps_line("app", health="starting"), ps_line("queue")], ["app: starting"]),
    ([ps_line("app", health="healthy")], ["queue: no container"]),
    ([ps_line("app", state="restarting", status="Restarting (1) 2 seconds ago", code=1), ps_line("queue")],
     ["app: Restarting (1) 2 seconds ago (exit code 1)"]),
    ([ps_line("app", health="healthy"), ps_line("queue", state="exited", status="Exited (1)", code=1)],
     ["queue: Exited (1) (exit code 1)"]),
])
def test_stack_problems(rows, problems):
    assert deploy.stack_problems(rows) == problems


def test_wait_for_stack_returns_when_healthy():
    states = iter([[ps_line("app", health="starting"), ps_line("queue")],
                   [ps_line("app", health="healthy"), ps_line("queue")]])
    sleeps = []
    assert deploy.wait_for_stack(lambda: next(states), 60, sleep=sleeps.append) == []
    assert sleeps == [1.0]


def test_wait_for_stack_gives_up_at_once_on_a_crash_loop():
    rows = [ps_line("app", state="restarting", status="Restarting (1)", code=1), ps_line("queue")]
    assert deploy.wait_for_stack(lambda: rows, 60, sleep=lambda _s: pytest.fail("waited")) == [
        "app: Restarting (1) (exit code 1)"]


def test_wait_for_stack_times_out():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    problems = deploy.wait_for_stack(lambda: [ps_line("app", health="starting"), ps_line("queue")], 5,
                                     clock=lambda: now[0], sleep=sleep)
    assert problems == ["app: starting", "(waited 5 s)"] and now[0] == 5


def fake_config(monkeypatch, environment=None, returncode=0):
    model = {"services": {"app": {"environment": environment or {}}}}

    def compose(_cfg, _env, *args, check=True):
        assert args[:3] == ("config", "--format", "json")
        return subprocess.CompletedProcess(args, returncode, json.dumps(model), "line 3: x=Zq9 unexpected")

    monkeypatch.setattr(deploy, "compose", compose)


VALID = {"FULL_BASE_URL": "https://os.example.org", "SECURITY_SALT": "0123456789abcdef0123456789abcdef0123",
         "DB_HOST": "db", "DB_PORT": "5432", "DB_USERNAME": "os", "DB_PASSWORD": SECRET, "DB_NAME": "os",
         "PORT": "8080"}


def test_service_environment_is_validated_after_interpolation(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    fake_config(monkeypatch, VALID)
    deploy.require_valid_service_env(cfg, tmp_path / "x.env")  # valid: no error
    fake_config(monkeypatch, {**VALID, "DB_PASSWORD": "Zq9"})  # what Compose made of Zq9$...
    with pytest.raises(EnvInvalidError) as info:
        deploy.require_valid_service_env(cfg, tmp_path / "x.env")
    message = str(info.value)
    assert "passes the validator, but the environment Compose gives the containers does not" in message
    assert "error: DB_PASSWORD: must be at least 12 characters long" in message
    assert "$$" in message and "Zq9" not in message


def test_compose_config_errors_are_not_quoted(tmp_path, monkeypatch):
    fake_config(monkeypatch, returncode=1)
    with pytest.raises(EnvInvalidError) as info:
        deploy.require_valid_service_env(make_cfg(tmp_path), tmp_path / "x.env")
    assert "docker compose config --quiet" in str(info.value) and "Zq9" not in str(info.value)


def test_secret_files_are_container_paths_for_the_deploy_checks(tmp_path, monkeypatch):
    """KEY_FILE=/run/secrets/... (Compose or Swarm secrets) exists in the container, not on the deploying host."""
    cfg = make_cfg(tmp_path)
    secrets = {k: v for k, v in VALID.items() if k != "DB_PASSWORD"}
    secrets["DB_PASSWORD_FILE"] = "/run/secrets/db_password-not-on-this-host"
    fake_config(monkeypatch, secrets)
    deploy.require_valid_service_env(cfg, tmp_path / "x.env")  # valid: the file is not read here
    env_file = tmp_path / "x.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items() if k != "PORT"))
    monkeypatch.setattr(deploy, "deploy_env_file", lambda _cfg: env_file)
    assert deploy.check_env(cfg) == env_file
    fake_config(monkeypatch, {**secrets, "DB_PASSWORD": SECRET})  # still not both
    with pytest.raises(EnvInvalidError) as info:
        deploy.require_valid_service_env(cfg, env_file)
    assert "error: DB_PASSWORD: is set and DB_PASSWORD_FILE too" in str(info.value)
    assert SECRET not in str(info.value)
