"""The Swarm stack files (stack.yaml, stack.migrate.yaml, edge/Caddyfile) as rendered,
and the pure parts of `invoke deploy --swarm` (cloudbuilder/swarm.py): the secrets
split, convergence of `docker service inspect` data. No engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudbuilder import swarm
from cloudbuilder.assemble import plan_tree, render_template
from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.errors import ConfigError

pytestmark = pytest.mark.unit


def make_cfg(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0~rc1",
                           "source_date_epoch": "0", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def render(tmp_path: Path, name: str, **values) -> str:
    cfg = make_cfg(tmp_path, **values)
    plan = plan_tree(cfg, "docker", tmp_path)
    source = next(f.source for f in plan.files if f.dest == name)
    return render_template(source.read_text(), plan.context, name=name, search_path=plan.search_path)


def stack(tmp_path: Path, name: str = "stack.yaml", **values) -> dict:
    return yaml.safe_load(render(tmp_path, name, **values))


def test_web_replicas_roll_over_health_gated_and_roll_back(tmp_path):
    app = stack(tmp_path, **{"scale.replicas": "3"})["services"]["app"]
    deploy = app["deploy"]
    assert deploy["replicas"] == "${OSCB_REPLICAS:-3}"  # the setting, overridable at deploy time
    assert deploy["endpoint_mode"] == "dnsrr"  # no VIP: works without IPVS
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["update_config"]["parallelism"] == 1 and deploy["update_config"]["monitor"]
    assert deploy["rollback_config"]["order"] == "start-first"
    assert deploy["restart_policy"]["condition"] == "any"
    assert deploy["resources"]["limits"]["memory"] == "1g"
    assert app["healthcheck"]["test"] == ["CMD", "/opt/orangescrum/entrypoint.sh", "healthcheck"]
    assert app["read_only"] is True and app["cap_drop"] == ["ALL"]
    assert "ports" not in app  # only the edge publishes


def test_the_edge_publishes_in_host_mode_with_the_configured_image_and_port(tmp_path):
    model = stack(tmp_path, **{"swarm.edge_image": "registry.example.org/caddy:2.6.2", "docker.host_port": "9090"})
    edge = model["services"]["edge"]
    assert edge["image"] == "registry.example.org/caddy:2.6.2"
    assert edge["ports"] == [{"target": 8080, "published": 9090, "protocol": "tcp", "mode": "host"}]
    assert edge["configs"] == [{"source": "edge_caddyfile", "target": "/etc/caddy/Caddyfile"}]
    # configs are immutable: each version has its own name (a Docker tag form of 4.1.0~rc1)
    assert model["configs"]["edge_caddyfile"]["name"] == "orangescrum_edge_4.1.0-rc1"


def test_queue_and_recurring_are_one_instance_and_recurring_waits_the_interval(tmp_path):
    services = stack(tmp_path, **{"service.recurring_interval": "1h 30min"})["services"]
    for name in ("queue", "recurring"):
        assert services[name]["deploy"]["replicas"] == 1
        assert services[name]["deploy"]["update_config"]["order"] == "stop-first"  # never two at once
    assert services["recurring"]["command"] == ["recurring"]
    assert services["recurring"]["deploy"]["restart_policy"] == {"condition": "any", "delay": "5400s"}
    # a run that exits is no failed update (Swarm calls an exit within the monitor window one)
    for key in ("update_config", "rollback_config"):
        assert services["recurring"]["deploy"][key]["failure_action"] == "continue"
    assert services["queue"]["command"] == ["queue-worker"]
    assert "migrate" not in services  # its own file, deployed first


def test_migration_is_a_one_shot_job_in_its_own_file(tmp_path):
    model = stack(tmp_path, "stack.migrate.yaml")
    assert list(model["services"]) == ["migrate"]
    job = model["services"]["migrate"]
    assert job["deploy"]["mode"] == "replicated-job"
    assert job["deploy"]["restart_policy"]["condition"] == "none"
    assert job["command"] == ["migrate"]  # the entrypoint's command (app.migrate_command)
    # same image, network and volumes as the services of stack.yaml
    main = stack(tmp_path)
    assert job["image"] == main["services"]["app"]["image"] == "orangescrum/orangescrum:4.1.0-rc1"
    assert model["networks"] == main["networks"]


def test_secrets_become_key_file_and_docker_secrets(tmp_path):
    model = stack(tmp_path, **{"swarm.secrets": "DB_PASSWORD,SECURITY_SALT", "swarm.stack_name": "prod"})
    app = model["services"]["app"]
    assert app["environment"]["DB_PASSWORD_FILE"] == "/run/secrets/DB_PASSWORD"
    assert app["environment"]["SECURITY_SALT_FILE"] == "/run/secrets/SECURITY_SALT"
    assert app["secrets"] == ["DB_PASSWORD", "SECURITY_SALT"]
    assert model["secrets"]["DB_PASSWORD"] == {"name": "prod_DB_PASSWORD_${ORANGESCRUM_SECRETS_VERSION:-1}",
                                               "file": "${ORANGESCRUM_SECRETS_DIR:-./secrets}/DB_PASSWORD"}
    none = stack(tmp_path, **{"swarm.secrets": ""})
    assert "secrets" not in none and "secrets" not in none["services"]["app"]
    assert not any(k.endswith("_FILE") for k in none["services"]["app"]["environment"])


def test_the_extraction_dir_is_an_exec_tmpfs_owned_by_the_image_user(tmp_path):
    model = stack(tmp_path, **{"docker.uid": "1500", "docker.gid": "1600"})
    opts = model["volumes"]["extract"]["driver_opts"]
    assert opts["type"] == "tmpfs" and "exec" in opts["o"].split(",")
    assert "uid=1500" in opts["o"] and "gid=1600" in opts["o"]
    assert {"type": "volume", "source": "extract", "target": "/var/cache/orangescrum"} in \
        model["services"]["app"]["volumes"]


def test_each_task_has_an_extraction_volume_of_its_own(tmp_path):
    """Replicas on one node must not share it (a starting one replaces other versions' extractions)."""
    from cloudbuilder.swarm import extraction_volume_prefix

    model = stack(tmp_path, **{"swarm.stack_name": "os-prod"})
    name = model["volumes"]["extract"]["name"]
    assert name == extraction_volume_prefix("os-prod") + "{{.Task.ID}}"  # swarmkit expands it per task
    for service in ("app", "queue", "recurring"):
        assert any(v["source"] == "extract" for v in model["services"][service]["volumes"]), service


def test_bad_settings_are_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="scale.replicas"):
        make_cfg(tmp_path, **{"scale.replicas": "0"})
    with pytest.raises(ConfigError, match="swarm.stack_name"):
        make_cfg(tmp_path, **{"swarm.stack_name": "Bad Name"})
    with pytest.raises(ConfigError, match="swarm.secrets"):
        make_cfg(tmp_path, **{"swarm.secrets": "db_password"})


def test_every_service_is_told_the_replicas_the_validator_checks_sessions_against(tmp_path):
    for name in ("stack.yaml", "stack.migrate.yaml"):
        for service, spec in stack(tmp_path, name, **{"scale.replicas": "4"})["services"].items():
            if service != "edge":
                assert spec["environment"]["OSCB_REPLICAS"] == "${OSCB_REPLICAS:-4}", (name, service)


def test_caddyfile_proxies_to_the_dnsrr_replicas_with_retries(tmp_path):
    text = render(tmp_path, "edge/Caddyfile")
    assert "dynamic a app 8080" in text
    assert "lb_try_duration" in text and "fail_duration" in text
    assert "admin off" in text


# --------------------------------------------------------------------------
# cloudbuilder/swarm.py
# --------------------------------------------------------------------------


def test_secrets_leave_the_env_file_and_are_written_privately(tmp_path):
    values = {"DB_HOST": "db", "DB_PASSWORD": "s3cret-Value", "SECURITY_SALT": "salt-value"}
    stack_env = swarm.write_stack_env(tmp_path / "w", values, ("DB_PASSWORD", "SECURITY_SALT"), Path("prod.env"))
    assert stack_env.env_file.read_text() == "DB_HOST=db\n"
    assert (stack_env.secrets_dir / "DB_PASSWORD").read_text() == "s3cret-Value"
    assert (stack_env.secrets_dir / "DB_PASSWORD").stat().st_mode & 0o777 == 0o600
    assert stack_env.env_file.stat().st_mode & 0o777 == 0o600
    assert "s3cret" not in stack_env.secrets_version and len(stack_env.secrets_version) == 12
    changed = swarm.secrets_version({**values, "DB_PASSWORD": "other"})
    assert changed != stack_env.secrets_version  # a new value is a new (immutable) secret
    env = stack_env.environ({"PATH": "/bin"})
    assert env["ORANGESCRUM_ENV_FILE"] == str(stack_env.env_file)
    assert "s3cret-Value" not in "".join(env.values())


def test_a_secret_the_env_file_does_not_set_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"SMTP_PASSWORD, which prod.env does not set.*OSCB_SWARM_SECRETS"):
        swarm.split_secrets({"DB_PASSWORD": "x"}, ("DB_PASSWORD", "SMTP_PASSWORD"), Path("prod.env"))


def _task(state: str, image: str = "img:2", desired: str = "running", iteration: int | None = None, err: str = ""):
    task = {"Status": {"State": state, "Err": err, "ContainerStatus": {"ExitCode": 1 if err else 0}},
            "DesiredState": desired, "Spec": {"ContainerSpec": {"Image": image}}}
    if iteration is not None:
        task["JobIteration"] = {"Index": iteration}
    return task


def _service(name: str, tasks, replicas: int = 3, update=None, image: str = "img:2"):
    return swarm.ServiceState(name=name, spec={"Mode": {"Replicated": {"Replicas": replicas}},
                                               "TaskTemplate": {"ContainerSpec": {"Image": image}}},
                              tasks=tuple(tasks), update=update)


def test_converged_needs_every_replica_of_the_new_image_running():
    ok = _service("s_app", [_task("running")] * 3, update={"State": "completed", "StartedAt": "2026-01-01T00:00:01"})
    assert swarm.service_problem(ok) is None
    old = _service("s_app", [_task("running"), _task("running", "img:1"), _task("running", "img:1")])
    assert swarm.service_problem(old) == "s_app: 1/3 running (running)"
    starting = _service("s_app", [_task("running")] * 2 + [_task("starting")])
    assert swarm.service_problem(starting) == "s_app: 2/3 running (running, running, starting)"
    updating = _service("s_app", [_task("running")] * 3, update={"State": "updating", "StartedAt": "2026-01-02"})
    assert swarm.service_problem(updating) == "s_app: updating"


def test_an_automatic_rollback_is_a_failed_deploy_but_the_goal_of_rollback():
    rolled = _service("s_app", [_task("running")] * 3,
                      update={"State": "rollback_completed", "StartedAt": "2026-01-02T10:00:00",
                              "Message": "rollback completed"})
    assert swarm.service_problem(rolled, since="2026-01-02T09:59:59") == \
        "s_app: update rollback_completed: rollback completed"
    assert swarm._failed_update(swarm.service_problem(rolled, since="2026-01-02T09:59:59"))
    assert swarm.service_problem(rolled, since="2026-01-02T09:59:59", rolling_back=True) is None
    # an update status from before this deploy is history
    assert swarm.service_problem(rolled, since="2026-01-03T00:00:00") is None


def test_recurring_is_converged_once_a_run_started():
    # after a run: the finished task is shut down, the next one waits (`ready`) for its delay
    between = [_task("complete", desired="shutdown"), _task("ready", desired="ready")]
    assert swarm.service_problem(_service("s_recurring", between, 1)) is None
    assert swarm.service_problem(_service("s_recurring", [_task("complete", "img:1", desired="shutdown")], 1)) == \
        "s_recurring: no run started yet (no task)"
    assert swarm.service_problem(_service("s_recurring", [_task("preparing")], 1)) == \
        "s_recurring: no run started yet (preparing)"


def test_job_result_looks_at_the_current_iteration_only():
    state = swarm.ServiceState(name="s_migrate", spec={}, tasks=(
        _task("complete", iteration=5), _task("running", iteration=9)), job_iteration=9)
    assert swarm.job_result(state) == ("running", "running")
    failed = swarm.ServiceState(name="s_migrate", spec={}, tasks=(
        _task("complete", iteration=5), _task("failed", iteration=9, err="task: non-zero exit (1)")), job_iteration=9)
    assert swarm.job_result(failed) == ("failed", "task: non-zero exit (1) (exit code 1)")
    done = swarm.ServiceState(name="s_migrate", spec={}, tasks=(_task("complete", iteration=9),), job_iteration=9)
    assert swarm.job_result(done) == ("complete", "")
    # the engine's JSON leaves a zero Index out (the first iteration)
    first = swarm.ServiceState(name="s_migrate", spec={}, tasks=({**_task("complete"), "JobIteration": {}},),
                               job_iteration=0)
    assert swarm.job_result(first) == ("complete", "")


def test_wait_until_reports_what_did_not_converge_at_the_timeout():
    now = [0.0]
    problems = swarm.wait_until(lambda: ["s_app: 2/3 running (running, running, starting)"], 10, what="x",
                                clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert problems == ["s_app: 2/3 running (running, running, starting)", "(waited 10 s)"]
    assert swarm.wait_until(lambda: ["s_app: update paused: x"], 10, what="x", stop=lambda p: True,
                            clock=lambda: 0.0, sleep=lambda s: None) == ["s_app: update paused: x"]


def test_rollback_takes_the_services_that_have_a_previous_version():
    def state(previous: bool) -> swarm.ServiceState:
        return swarm.ServiceState(name="x", spec={}, tasks=(), has_previous=previous)

    assert swarm.rollback_targets("s", {"app": state(True), "queue": state(False), "recurring": state(True)}) == \
        ["app", "recurring"]
    with pytest.raises(ConfigError, match="no service of the stack s has a previous version"):
        swarm.rollback_targets("s", {"app": state(False), "queue": state(False), "recurring": state(False)})
    with pytest.raises(ConfigError, match="has no service s_queue"):
        swarm.rollback_targets("s", {"app": state(True), "queue": None, "recurring": state(True)})


def test_deploy_refuses_sessions_the_replicas_cannot_share_before_any_docker_call(tmp_path, monkeypatch):
    from cloudbuilder.errors import EnvInvalidError

    def no_docker(*_a, **_k):
        raise AssertionError("docker must not be called")

    monkeypatch.setattr(swarm, "require_swarm", no_docker)
    monkeypatch.setattr(swarm, "_docker", no_docker)
    tree = tmp_path / "dist" / "docker"
    tree.mkdir(parents=True)
    for name in ("stack.yaml", "stack.migrate.yaml"):
        (tree / name).write_text("services: {}\n")
    good = {"DB_HOST": "db.internal", "DB_PORT": "5432", "DB_USERNAME": "orangescrum", "DB_PASSWORD": "Kx7#mQ2!vR9pLw4z",
            "DB_NAME": "orangescrum", "SECURITY_SALT": "3f1c9a0b7e2d4c6f8a1b3d5e7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f5a",
            "FULL_BASE_URL": "https://tasks.acme.test", "REDIS_PASSWORD": "Hv4-nT8@qW2#kP6z"}
    env_file = tmp_path / "prod.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in good.items()))  # sessions: php's files
    with pytest.raises(EnvInvalidError, match="SESSION_HANDLER: OSCB_REPLICAS is above 1"):
        swarm.deploy_swarm(make_cfg(tmp_path, env_file=str(env_file), **{"scale.replicas": "3"}))
    # the same file with one replica gets past the validator (to the engine)
    with pytest.raises(AssertionError, match="docker must not be called"):
        swarm.deploy_swarm(make_cfg(tmp_path, env_file=str(env_file), **{"scale.replicas": "1"}))
