"""The deploy files (issue 16), checked as far as this machine can without building images:
the compose and Kubernetes YAML parse and name real commands, flags, ports and probes; the
systemd units pass ``systemd-analyze verify``; the Dockerfile is multi-stage, non-root,
without build tools in its final stage, with a healthcheck; every command the deploy files
run is one docs/operations.md runs; the alert rules and the dashboard name real metrics.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from paymux.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
PORT = 8000


def cli_command(argv: list[str]) -> None:
    """``argv`` (``paymux <command> [options]``) names a real command and real options."""
    assert argv[0] == "paymux", argv
    group: Any = typer.main.get_command(cli)
    command = group.commands.get(argv[1])
    assert command is not None, f"no command paymux {argv[1]}"
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for arg in argv[2:]:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in options, f"paymux {argv[1]} has no {arg}"


def documented(argv: list[str]) -> None:
    line = " ".join(argv)
    assert line in OPERATIONS, f"docs/operations.md never runs `{line}`"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def kubernetes() -> list[dict[str, Any]]:
    text = (DEPLOY / "kubernetes" / "paymux.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_compose_runs_api_worker_migration_and_postgresql() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "api", "worker"}
    assert services["db"]["image"].startswith("postgres:")
    for name in ("migrate", "api", "worker"):
        argv = services[name]["command"]
        cli_command(argv)
        documented(argv)
        assert "postgresql+asyncpg://" in services[name]["environment"]["PAYMUX_DATABASE_URL"]
    assert services["migrate"]["command"] == ["paymux", "migrate"]
    assert services["worker"]["command"] == ["paymux", "worker"]
    api = services["api"]["command"]
    assert api[:2] == ["paymux", "serve"] and "--no-worker" in api
    assert api[api.index("--port") + 1] == str(PORT)
    assert services["api"]["ports"] == [f"127.0.0.1:{PORT}:{PORT}"]
    assert f"127.0.0.1:{PORT}/health/ready" in " ".join(services["api"]["healthcheck"]["test"])
    # The schema before the processes; PostgreSQL healthy before the schema.
    assert services["worker"]["environment"]["PAYMUX_WORKER_METRICS_PORT"] == "9100"
    assert services["worker"]["ports"] == ["127.0.0.1:9100:9100"]
    assert "127.0.0.1:9100/health/live" in " ".join(services["worker"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}


def test_kubernetes_has_api_and_worker_deployments_a_migration_job_and_a_secret() -> None:
    docs = kubernetes()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("ConfigMap", "paymux"),
        ("Deployment", "paymux-api"),
        ("Deployment", "paymux-worker"),
        ("Job", "paymux-migrate"),
        ("NetworkPolicy", "paymux"),
        ("Secret", "paymux"),
        ("Service", "paymux"),
    ]
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    secret = by_name[("Secret", "paymux")]
    assert set(secret["stringData"]) >= {
        "PAYMUX_DATABASE_URL",
        "PAYMUX_ENCRYPTION_KEYS",
        "PAYMUX_METRICS_TOKEN",
    }
    for kind, name in (
        ("Job", "paymux-migrate"),
        ("Deployment", "paymux-api"),
        ("Deployment", "paymux-worker"),
    ):
        pod = by_name[(kind, name)]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            cli_command(container["command"])
            documented(container["command"])
            assert {"secretRef": {"name": "paymux"}} in container["envFrom"]
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["requests"]["memory"]
    job = by_name[("Job", "paymux-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["paymux", "migrate"]
    api_pod = by_name[("Deployment", "paymux-api")]["spec"]["template"]["spec"]
    [api] = api_pod["containers"]
    assert api["ports"] == [{"name": "http", "containerPort": PORT}]
    assert api["command"][api["command"].index("--port") + 1] == str(PORT)
    assert api["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    # Its grace period covers the shutdown timeout the ConfigMap sets, plus the preStop.
    timeout = float(by_name[("ConfigMap", "paymux")]["data"]["PAYMUX_SHUTDOWN_TIMEOUT"])
    assert api_pod["terminationGracePeriodSeconds"] > timeout + 5
    [wait] = api_pod["initContainers"]
    assert "paymux migrate --check" in wait["command"][-1]
    documented(["paymux", "migrate", "--check"])
    worker = by_name[("Deployment", "paymux-worker")]["spec"]["template"]["spec"]
    assert worker["containers"][0]["command"] == ["paymux", "worker"]
    # The worker's /metrics port is the one the ConfigMap gives it.
    config = by_name[("ConfigMap", "paymux")]["data"]
    assert worker["containers"][0]["ports"] == [
        {"name": "metrics", "containerPort": int(config["PAYMUX_WORKER_METRICS_PORT"])}
    ]
    # Probed on that port: /health/live, which `paymux worker` serves there (its e2e test).
    probe = worker["containers"][0]["livenessProbe"]
    assert probe["httpGet"] == {"path": "/health/live", "port": "metrics"}
    assert probe["periodSeconds"] > 0 and probe["failureThreshold"] >= 1
    # X-Forwarded-* believed from a narrow range (no /8), and only the ingress controller
    # and Prometheus may reach the pods.
    trusted = ipaddress.ip_network(config["PAYMUX_TRUSTED_PROXIES"])
    assert trusted.prefixlen >= 16, trusted
    policy = by_name[("NetworkPolicy", "paymux")]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app": "paymux"}}
    assert policy["policyTypes"] == ["Ingress"]
    sources = [
        frm["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["ingress"]
        for frm in rule["from"]
    ]
    assert sources == ["ingress-nginx", "monitoring"]
    service = by_name[("Service", "paymux")]["spec"]
    assert service["selector"] == {"app": "paymux", "component": "api"}
    assert service["ports"][0]["targetPort"] == "http"


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = _stages(text)
    assert len(stages) == 2
    assert " AS build" in stages[0] and " AS run" in stages[1]
    final = stages[1]
    assert "COPY --from=build /opt/paymux/.venv" in final
    assert "build-essential" not in final and "apt-get install" not in final
    user = re.search(r"^USER (\S+)", final, re.MULTILINE)
    assert user and not user.group(1).startswith(("root", "0"))
    health = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", final, re.MULTILINE | re.DOTALL)
    assert health and f"127.0.0.1:{PORT}/health/live" in health.group(1)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", final, re.MULTILINE).group(1))  # type: ignore[union-attr]
    cli_command(cmd)
    documented(cmd)
    assert cmd[cmd.index("--port") + 1] == str(PORT) and f"EXPOSE {PORT}" in final
    # What the docs build is this file.
    assert "docker build -f deploy/Dockerfile" in OPERATIONS


def test_the_procfile_and_systemd_units_run_documented_commands() -> None:
    lines = [
        line.split(":", 1)[1].strip()
        for line in (DEPLOY / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    units = [
        (DEPLOY / name).read_text() for name in ("paymux-api.service", "paymux-worker@.service")
    ]
    execs = [
        m.group(1) for u in units for m in re.finditer(r"^Exec\w+=(\S*paymux .*)$", u, re.MULTILINE)
    ]
    assert len(execs) == 3
    for line in lines + execs:
        argv = shlex.split(line)
        argv[0] = "paymux"
        argv = [a for a in argv if not a.startswith("$")]
        cli_command(argv)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    # The units name /opt/paymux/.venv/bin/paymux; verify checks the file exists: this venv's.
    paymux = str(Path(shutil.which("paymux") or ROOT / ".venv" / "bin" / "paymux"))
    for name, as_name in (
        ("paymux-api.service", "paymux-api.service"),
        ("paymux-worker@.service", "paymux-worker@1.service"),
    ):
        text = (DEPLOY / name).read_text().replace("/opt/paymux/.venv/bin/paymux", paymux)
        (tmp_path / as_name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "paymux-api.service", "paymux-worker@1.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "Failed to" in done.stderr and "bus" in done.stderr.lower():
        pytest.skip(f"systemd-analyze can't run here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _metric_names() -> set[str]:
    source = (ROOT / "src" / "paymux" / "observability" / "metrics.py").read_text()
    return set(re.findall(r'"(paymux_[a-z_]+)"', source))


def _uses(expr: str) -> set[str]:
    names = set(re.findall(r"\b(paymux_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_alert_rules_and_dashboard_name_real_metrics() -> None:
    known = _metric_names()
    assert {
        "paymux_http_requests_total",
        "paymux_payments_total",
        "paymux_jobs_dead",
        "paymux_webhook_inbox_lag_seconds",
        "paymux_fraud_decisions_total",
    } <= known
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"PaymuxPaymentSuccessRateLow", "PaymuxWebhookLag", "PaymuxDeadJobs"} <= set(alerts)
    assert "> 300" in alerts["PaymuxWebhookLag"]["expr"]  # five minutes
    # Authorized-not-captured, pending and 3-D Secure are not failures; captures not tries.
    rate = alerts["PaymuxPaymentSuccessRateLow"]["expr"]
    assert 'outcome=~"succeeded|requires_capture|processing"' in rate
    assert 'outcome!="requires_action"' in rate
    assert rate.count('operation="authorize"') == 3
    # The database's figures are the same from every process: max, never sum.
    for name in (
        "PaymuxDeadWebhooks",
        "PaymuxDeadJobs",
        "PaymuxNoWorker",
        "PaymuxOutboundDeliveriesStuck",
        "PaymuxOutboundDispatchBehind",
    ):
        assert alerts[name]["expr"].startswith("max("), name
    # One dead job or dead webhook is already worth a ticket; no live worker pages.
    assert alerts["PaymuxDeadJobs"]["expr"] == "max(paymux_jobs_dead) > 0"
    assert (
        alerts["PaymuxDeadWebhooks"]["expr"]
        == 'max(paymux_webhook_inbox_events{status="dead"}) > 0'
    )
    assert alerts["PaymuxNoWorker"]["expr"] == "max(paymux_workers_alive) == 0"
    for rule in alerts.values():
        assert _uses(rule["expr"]) and _uses(rule["expr"]) <= known, rule["alert"]
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = set().union(*(_uses(e) for e in exprs))
    assert used <= known, used - known
    assert {"paymux_payments_total", "paymux_webhook_inbox_lag_seconds", "paymux_jobs"} <= used
    assert "paymux_webhook_deliveries_delivered_total" in used
