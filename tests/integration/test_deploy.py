"""deploy/ checked offline, with no Docker engine and no cluster: the compose file against
the compose-spec schema (vendored in check-jsonschema), the Kubernetes manifests against
the Kubernetes schemas (bundled in kubernetes-validate; our own schemas for the two
CRDs), the Prometheus rules and config with promtool, and every file against the code
it has to agree with (topics, ports, roles, probes, which role gets which secret).

No broker; the tools run as processes, so these live beside the integration tests.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from cryptography.fernet import Fernet
from kubernetes_validate.utils import latest_version, schema_contents

from synctec_webhooks.admin import check_token
from synctec_webhooks.config import DEFAULT_PORTS, ConfigError, Settings
from synctec_webhooks.kafka import TopicSpec, core_topics
from synctec_webhooks.kafka.follower import READER_GROUP
from synctec_webhooks.secrets_crypto import SecretBox
from synctec_webhooks.topics import Topics
from tests.integration.kafka_acls import kafka_users, may
from tests.integration.prometheus_server import INSTALL_HINT
from tools import dashboard as dash

ROOT = dash.ROOT
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
WORKERS = ("fanout", "deliver", "retry")
ADMIN = "admin"
ROLES = (*WORKERS, ADMIN)
# What the code needs (secrets_crypto, admin.service): the delivery and retry workers
# open sealed webhook secrets to sign and the admin service seals them; the fan-out
# never opens one, so it gets no key. Only the admin service gets the admin token and
# the portal-link signing key; the latter is optional (unset: derived from the token).
SECRET_KEY = "SYNCTEC_SECRET_KEY"
ADMIN_TOKEN = "SYNCTEC_ADMIN_TOKEN"
PORTAL_KEY = "SYNCTEC_PORTAL_SIGNING_KEY"
SECRETS = {SECRET_KEY, ADMIN_TOKEN, PORTAL_KEY}
OPTIONAL_SECRETS = {PORTAL_KEY}
SECRETS_OF = {
    "fanout": set(),
    "deliver": {SECRET_KEY},
    "retry": {SECRET_KEY},
    ADMIN: {SECRET_KEY, ADMIN_TOKEN, PORTAL_KEY},
}
K8S_SECRET = "synctec-webhooks-secrets"
# Each role is its own Kafka user (kafka-users.yaml), its password a mounted file.
KAFKA_USER = "SYNCTEC_KAFKA_SASL_USERNAME"
PASSWORD_FILE = "SYNCTEC_KAFKA_SASL_PASSWORD_FILE"
CA_FILE = "SYNCTEC_KAFKA_SSL_CA_LOCATION"
# Manifests that document rather than deploy (the Secret's placeholder): validated,
# never in kustomization.yaml, so an apply cannot overwrite the real Secret.
EXAMPLES = {"secret.example.yaml"}
# The oldest Kubernetes minor we claim, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.29", latest_version())
PROMETHEUS_JOBS = {f"synctec-{role}" for role in ROLES}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, f"promtool not found; {INSTALL_HINT}"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml_docs(path)
    ]


def the(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for _, d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


# --- Prometheus -----------------------------------------------------------------------


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", "deploy/prometheus/rules.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 10 rules found" in rules.stdout
    config = promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = promtool("test", "rules", "deploy/prometheus/rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(
        re.findall(r"alertname: (\w+)", (DEPLOY / "prometheus/rules.test.yml").read_text())
    )
    alerts = {r["alert"] for g in dash.load_rules()["groups"] for r in g["rules"] if "alert" in r}
    assert alerts <= tested, f"alerts without a promtool test: {alerts - tested}"


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    rules = dash.load_rules()
    broken = copy.deepcopy(rules)
    broken["groups"][1]["rules"][0]["expr"] = "sum by (reason (increase(x[5m]))"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_every_alert_has_a_runbook_entry_and_a_severity() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^### (\w+)$", runbook, re.MULTILINE))
    for group in dash.load_rules()["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            assert name in headings, f"docs/operations.md has no '### {name}'"
            assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
            assert rule["labels"]["severity"] in ("warning", "critical")


def test_scrape_jobs_are_the_roles_on_their_ports() -> None:
    config = yaml.safe_load(dash.PROMETHEUS_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert PROMETHEUS_JOBS <= set(jobs)
    for role in ROLES:
        [sd] = jobs[f"synctec-{role}"]["dns_sd_configs"]
        assert sd["names"] == [role] and sd["port"] == DEFAULT_PORTS[role]


# --- Grafana --------------------------------------------------------------------------


def test_dashboard_has_the_panels_and_variables_operators_need() -> None:
    board = dash.load_dashboard()
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for needed in (
        "delivery rate",
        "success ratio",
        "request latency p50 / p95 / p99",
        "end-to-end latency p50 / p95 / p99",
        "retries",
        "dead letters",
        "consumer lag",
        "in-flight",
        "per event type",
    ):
        assert needed in titles, needed
    variables = dash.variables(board)
    for name in ("job", "event_type"):
        assert variables[name]["type"] == "query"
        assert variables[name]["multi"] and variables[name]["includeAll"]
        dash.variable_query(variables[name])  # a label_values() query
    assert variables["datasource"]["type"] == "datasource"


def test_every_panel_query_is_filtered_by_job_and_laid_out_on_the_grid() -> None:
    board = dash.load_dashboard()
    panels = list(dash.panels(board))
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
            dash.substitute(target["expr"], dash.all_values(board))  # nothing left over


def test_grafana_provisioning_loads_the_dashboard_from_the_compose_mount() -> None:
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/synctec.yml").read_text()
    )["providers"]
    [datasource] = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert datasource["type"] == "prometheus"
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    path = providers[0]["options"]["path"]
    assert (COMPOSE.parent / mounts[path]).resolve() == dash.DASHBOARD.parent
    assert (COMPOSE.parent / mounts["/etc/grafana/provisioning"]).is_dir()


# --- compose --------------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_matches_the_compose_spec(tmp_path: Path) -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator does reject what the spec does not allow.
    bad = yaml.safe_load(COMPOSE.read_text())
    bad["services"]["deliver"]["replica"] = 2
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(bad))
    assert check_compose(tmp_path / "compose.yaml").returncode != 0


def test_compose_runs_a_three_broker_kraft_cluster_and_the_workers() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    brokers = {name: s for name, s in services.items() if name.startswith("kafka-")}
    assert len(brokers) == 3
    voters = {f"{i}@kafka-{i}:9093" for i in (1, 2, 3)}
    for name, broker in brokers.items():
        env = broker["environment"]
        assert broker["image"].startswith("apache/kafka:")
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert f"{env['KAFKA_NODE_ID']}@{name}:9093" in voters
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    for role in ROLES:
        worker = services[role]
        assert worker["command"] == [role]
        assert (
            COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]
        ).is_file()
        env = {k: compose_default(str(v)) for k, v in worker["environment"].items()}
        assert set(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == {f"{b}:9092" for b in brokers}
        Settings.from_env(env)  # settings the code accepts
        assert f"127.0.0.1:{DEFAULT_PORTS[role]}/readyz" in " ".join(worker["healthcheck"]["test"])
        assert worker["expose"] == [str(DEFAULT_PORTS[role])]
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    prometheus = services["prometheus"]
    config_dir = prometheus["volumes"][0].split(":")[0]
    assert (COMPOSE.parent / config_dir).resolve() == dash.PROMETHEUS_CONFIG.parent


def compose_default(value: str) -> str:
    """`${NAME:-default}` as compose resolves it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_compose_gives_each_role_the_secrets_it_needs_and_no_others() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    keys = set()
    for role in ROLES:
        env = services[role]["environment"]
        given = SECRETS & set(env)
        assert SECRETS_OF[role] - OPTIONAL_SECRETS <= given <= SECRETS_OF[role], role
        if SECRET_KEY in env:
            # Overridable from the shell or .env, one value for every role.
            assert env[SECRET_KEY].startswith("${SYNCTEC_SECRET_KEY:-"), role
            keys.add(env[SECRET_KEY])
    assert len(keys) == 1
    # The placeholders work out of the box (the code accepts them) and say what they are.
    [key] = keys
    SecretBox([compose_default(key)])
    token = services[ADMIN]["environment"][ADMIN_TOKEN]
    assert token.startswith("${SYNCTEC_ADMIN_TOKEN:-INSECURE")
    check_token(compose_default(token))


def test_compose_admin_service_publishes_its_api_on_loopback() -> None:
    admin = yaml.safe_load(COMPOSE.read_text())["services"][ADMIN]
    env = {k: compose_default(str(v)) for k, v in admin["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.admin_host == "0.0.0.0"  # the container's own interfaces
    assert admin["ports"] == [f"127.0.0.1:{settings.admin_port}:{settings.admin_port}"]
    assert admin["deploy"]["replicas"] == 1


def compose_topics() -> dict[str, TopicSpec]:
    """The topics deploy/compose/create-topics.sh creates, with the job's environment."""
    env = yaml.safe_load(COMPOSE.read_text())["services"]["topics"]["environment"]
    script = (COMPOSE.parent / "create-topics.sh").read_text().replace("\\\n", " ")
    found: dict[str, TopicSpec] = {}
    for line in script.splitlines():
        if not line.strip().startswith("create "):
            continue
        words = shlex.split(line.strip())
        tiers = range(1, int(env["RETRY_TIERS"]) + 1) if "$tier" in line else [None]
        for tier in tiers:
            args = [w.replace("$PREFIX", env["PREFIX"]).replace("$tier", str(tier)) for w in words]
            name = args[args.index("--topic") + 1]
            config = dict(args[i + 1].split("=", 1) for i, w in enumerate(args) if w == "--config")
            partitions = int(args[args.index("--partitions") + 1])
            found[name] = TopicSpec(name, partitions, config)
    return found


def assert_topics_match_the_code(found: dict[str, TopicSpec], where: str) -> None:
    expected = {t.name: t for t in core_topics(Settings(topic_prefix="synctec"))}
    assert set(found) == set(expected), where
    for name, spec in expected.items():
        assert found[name].partitions == spec.partitions, (where, name)
        # The manifests may add settings (retention), never contradict the code's.
        for key, value in spec.config.items():
            assert str(found[name].config.get(key)) == value, (where, name, key)


def test_compose_topics_match_the_code() -> None:
    assert_topics_match_the_code(compose_topics(), "deploy/compose/create-topics.sh")


def test_dockerfile_builds_from_files_that_exist() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["synctec-webhooks"]' in text
    assert re.search(r"^USER [1-9][0-9]*$", text, re.MULTILINE), "runs as root"
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert {DEFAULT_PORTS[r] for r in (*ROLES, "run")} | {Settings.admin_port} <= exposed


# --- Kubernetes -----------------------------------------------------------------------


def crd_validator(schema_file: str) -> jsonschema.Draft202012Validator:
    # Kubernetes' own ObjectMeta and LabelSelector, from kubernetes-validate's bundle.
    definitions = schema_contents(
        f"kubernetes-json-schema/v{latest_version()}-local-strict/_definitions.json",
        latest_version(),
    )
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json",
        referencing.Resource.from_contents(definitions),
    )
    schema = json.loads((SCHEMAS / schema_file).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


CRDS = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "strimzi-kafkatopic-v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "strimzi-kafkauser-v1beta2.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-podmonitor-v1.json",
}


def validate(doc: dict[str, Any], version: str) -> None:
    crd = CRDS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        crd_validator(crd).validate(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_match_the_kubernetes_schemas(version: str) -> None:
    docs = k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "KafkaTopic",
        "KafkaUser",
        "NetworkPolicy",
    } <= kinds
    for name, doc in docs:
        try:
            validate(doc, version)
        except jsonschema.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


@pytest.mark.parametrize(
    ("kind", "name", "mutate"),
    [
        ("Deployment", "synctec-deliver", lambda d: d["spec"].update(replica=3)),
        (
            "Deployment",
            "synctec-fanout",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}),
        ),
        ("PodDisruptionBudget", "synctec-retry", lambda d: d["spec"].update(minAvailable=[1])),
        ("Service", "synctec-admin", lambda d: d["spec"]["ports"][0].update(port="http")),
        ("Secret", K8S_SECRET, lambda d: d.update(stringdata={})),
        ("KafkaTopic", "synctec-events", lambda d: d["spec"].update(partitions=0)),
        ("KafkaTopic", "synctec-events", lambda d: d["spec"].update(partition=6)),
        ("KafkaTopic", "synctec-events", lambda d: d["metadata"]["labels"].clear()),
        ("PodMonitor", "synctec-webhooks", lambda d: d["spec"].update(endpoints=[])),
        (
            "KafkaUser",
            "synctec-fanout",
            lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Wrte"]),
        ),
        (
            "KafkaUser",
            "synctec-deliver",
            lambda d: d["spec"]["authorization"]["acls"][0]["resource"].update(type="topics"),
        ),
        ("KafkaUser", "synctec-retry", lambda d: d["spec"].update(authentication={})),
        ("NetworkPolicy", "synctec-default-deny", lambda d: d["spec"].update(policyTypes="In")),
        (
            "NetworkPolicy",
            "synctec-webhook-egress",
            lambda d: d["spec"]["egress"][0]["to"][0]["ipBlock"].update(cidrs=[]),
        ),
    ],
)
def test_the_validators_reject_broken_manifests(kind: str, name: str, mutate: Any) -> None:
    doc = copy.deepcopy(the(kind, name))
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, latest_version())


def test_k8s_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert EXAMPLES <= files
    assert set(kustomization["resources"]) == files - EXAMPLES


def container_env(role: str) -> dict[str, dict[str, Any]]:
    [container] = the("Deployment", f"synctec-{role}")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def role_settings(role: str) -> Settings:
    """The role's settings as its pod gets them: the ConfigMap, and the Secret's keys
    with values the code accepts."""
    env = dict(the("ConfigMap", "synctec-webhooks")["data"])
    for name, var in container_env(role).items():
        secret = {
            SECRET_KEY: Fernet.generate_key().decode(),
            ADMIN_TOKEN: "t" * 32,
            PORTAL_KEY: "p" * 32,
        }
        env[name] = var["value"] if "value" in var else secret[name]
    # The mounted Kafka password, as the code reads it from the file.
    if env.pop(PASSWORD_FILE, None):
        env["SYNCTEC_KAFKA_SASL_PASSWORD"] = "from-the-mounted-secret"
    return Settings.from_env(env)


@pytest.mark.parametrize("role", ROLES)
def test_k8s_role_deployment(role: str) -> None:
    settings = role_settings(role)
    deployment = the("Deployment", f"synctec-{role}")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["args"] == [role]
    assert container["envFrom"] == [{"configMapRef": {"name": "synctec-webhooks"}}]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected = {"metrics": settings.ops.port_for([role])}
    if role == ADMIN:
        expected["http"] = settings.admin_port
        assert settings.admin_host == "0.0.0.0"  # reachable through its Service
    assert ports == expected
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
    # A SIGTERM'd worker finishes in-flight POSTs first (HTTP timeout + 5 s) and commits.
    assert pod["spec"]["terminationGracePeriodSeconds"] > settings.http_timeout + 5 + 10
    replicas = deployment["spec"]["replicas"]
    if role == ADMIN:
        # Stateless but for what it replays at start; writes are serialized per process
        # only, so one replica (two at most), see the comment in admin.yaml.
        assert 1 <= replicas <= 2
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    else:
        # Replicas beyond the partition count would only stand by.
        partitions = {
            "fanout": settings.events_partitions,
            "deliver": settings.delivery_partitions,
            "retry": settings.delivery_partitions * len(settings.retry.delays),
        }[role]
        assert 2 <= replicas <= partitions
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert labels["app.kubernetes.io/component"] == role
    pdb = the("PodDisruptionBudget", f"synctec-{role}")["spec"]
    assert pdb["selector"]["matchLabels"] == labels
    # A node drain can always evict one pod: with one replica, minAvailable 1 never could.
    assert pdb.get("maxUnavailable", 0) >= 1 or pdb["minAvailable"] < replicas
    monitor = the("PodMonitor", "synctec-webhooks")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in ports


def test_k8s_admin_service_routes_to_the_api() -> None:
    service = the("Service", "synctec-admin")["spec"]
    pod = the("Deployment", "synctec-admin")["spec"]["template"]
    assert service["selector"] == pod["metadata"]["labels"]
    [port] = service["ports"]
    assert port["targetPort"] == "http"
    assert port["port"] == role_settings(ADMIN).admin_port


def test_k8s_secrets_come_from_the_secret_and_only_where_needed() -> None:
    for name, doc in k8s_docs():
        if doc["kind"] == "ConfigMap":
            assert not SECRETS & set(doc["data"]), name
    secret = the("Secret", K8S_SECRET)["stringData"]
    assert set(secret) == SECRETS
    for role in ROLES:
        env = {n: v for n, v in container_env(role).items() if "valueFrom" in v}
        assert set(env) == SECRETS_OF[role], role
        for name, var in env.items():
            ref = {"name": K8S_SECRET, "key": name}
            if name in OPTIONAL_SECRETS:
                ref["optional"] = True  # the pod starts without it
            assert var["valueFrom"] == {"secretKeyRef": ref}, (role, name)
            assert "value" not in var
        plain = {n for n, v in container_env(role).items() if "valueFrom" not in v}
        assert plain == {KAFKA_USER}, role  # a user name, not a secret


def test_k8s_secret_placeholders_are_refused_by_the_code() -> None:
    """Applied unedited, the placeholder Secret stops the services with a configuration
    error; it never runs them with a published key or token."""
    secret = the("Secret", K8S_SECRET)["stringData"]
    with pytest.raises(ConfigError, match=SECRET_KEY):
        SecretBox(Settings.from_env({SECRET_KEY: secret[SECRET_KEY]}).secret_keys)
    with pytest.raises(ConfigError, match=ADMIN_TOKEN):
        check_token(secret[ADMIN_TOKEN])
    with pytest.raises(ConfigError, match=PORTAL_KEY):
        Settings.from_env({PORTAL_KEY: secret[PORTAL_KEY]})


def test_k8s_topics_match_the_code() -> None:
    found = {
        d["spec"]["topicName"]: TopicSpec(
            d["spec"]["topicName"], d["spec"]["partitions"], d["spec"].get("config", {})
        )
        for _, d in k8s_docs()
        if d["kind"] == "KafkaTopic"
    }
    assert_topics_match_the_code(found, "deploy/k8s/topics.yaml")


# --- Kafka users, ACLs and network policies --------------------------------------------


def secret_example(name: str) -> dict[str, str]:
    docs = yaml_docs(K8S / "secret.example.yaml")
    [doc] = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
    return dict(doc["stringData"])


@pytest.mark.parametrize("role", ROLES)
def test_k8s_each_role_connects_as_its_own_kafka_user(role: str) -> None:
    settings = role_settings(role)
    users = kafka_users()
    user = settings.kafka.get("sasl.username")
    assert user == f"synctec-{role}" and isinstance(user, str)
    assert settings.kafka.get("security.protocol") == "SASL_SSL"
    assert (
        settings.kafka.get("sasl.mechanism")
        == users[user]["spec"]["authentication"]["type"].upper()
    )  # scram-sha-512
    # The files the settings name are the Secrets the pod mounts, which the example shows.
    config = the("ConfigMap", "synctec-webhooks")["data"]
    pod = the("Deployment", f"synctec-{role}")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    for variable, secret, key in (
        (PASSWORD_FILE, f"synctec-kafka-{role}", "password"),
        (CA_FILE, "synctec-kafka-cluster-ca", "ca.crt"),
    ):
        path = PurePosixPath(config[variable])
        mount = mounts[str(path.parent)]
        assert mount["readOnly"] is True
        volume = volumes[mount["name"]]
        assert volume["secretName"] == secret
        assert {"key": key, "path": path.name} in volume["items"]
        assert key in secret_example(secret)


def test_kafka_users_are_the_roles_and_their_acls_name_what_the_code_uses() -> None:
    prefix = the("ConfigMap", "synctec-webhooks")["data"]["SYNCTEC_TOPIC_PREFIX"]
    t = Topics(prefix)
    users = kafka_users()
    assert set(users) == {f"synctec-{role}" for role in ROLES} | {"synctec-producer"}
    core = {spec.name for spec in core_topics(Settings(topic_prefix=prefix))}
    names = {
        ("topic", "literal"): core,
        ("topic", "prefix"): {t.delivery(""), f"{prefix}.retry."},
        ("group", "literal"): {t.group(r) for r in (*WORKERS, READER_GROUP)},
        # The fan-out's transactional id is <prefix>.fanout.<SYNCTEC_INSTANCE_ID>.
        ("transactionalId", "prefix"): {t.group("fanout") + "."},
        # Every dead-letter replay's (deadletters/replay.py).
        ("transactionalId", "literal"): {t.group("deadletters-replay")},
    }
    for name, user in users.items():
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "synctec", name
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            kind = (resource["type"], resource.get("patternType", "literal"))
            assert resource["name"] in names[kind], (name, resource)
        # The code ensures every core topic at start: Create must be allowed (they exist).
        assert all(may(user, "Create", topic) for topic in core), name


def writers_of(topic: str) -> set[str]:
    return {name for name, user in kafka_users().items() if may(user, "Write", topic)}


def test_kafka_acls_only_the_fanout_writes_delivery_topics_among_the_workers() -> None:
    t = Topics("synctec")
    # The admin too, for what its API sends on purpose (kafka-users.yaml says why).
    assert writers_of(t.delivery("wh_0123")) == {"synctec-fanout", "synctec-admin"}
    assert writers_of(t.events) == {"synctec-producer"}
    assert writers_of(t.subscriptions) == {"synctec-admin"}
    assert writers_of(t.retry(1)) == {"synctec-deliver", "synctec-retry"}
    assert writers_of(t.attempts) == {"synctec-deliver", "synctec-retry"}
    assert writers_of(f"{t.deadletters}.replayed") == {"synctec-admin"}


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"  # the only one used here
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
PRIVATE_V6 = ("fc00::/7", "fe80::/10", "::1/128")


@pytest.mark.parametrize("role", ROLES)
def test_k8s_network_policies_of_each_role(role: str) -> None:
    policies = [d for _, d in k8s_docs() if d["kind"] == "NetworkPolicy"]
    pod = the("Deployment", f"synctec-{role}")["spec"]["template"]
    mine = [p["spec"] for p in policies if selects(p, pod["metadata"]["labels"])]
    # Shut by default: whatever no policy allows is refused.
    deny = the("NetworkPolicy", "synctec-default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    egress = [rule for p in mine for rule in p.get("egress", [])]
    ingress = [rule for p in mine for rule in p.get("ingress", [])]
    # Kafka, on the port the bootstrap address names, in the Strimzi cluster's namespace.
    bootstrap = the("ConfigMap", "synctec-webhooks")["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    kafka_rules = [
        r
        for r in egress
        if any(
            peer.get("namespaceSelector", {}).get("matchLabels")
            == {"kubernetes.io/metadata.name": "kafka"}
            for peer in r.get("to", [])
        )
    ]
    assert [p["port"] for r in kafka_rules for p in r["ports"]] == [int(bootstrap.split(":")[1])]
    # The internet only for the roles that POST, and never a private range.
    blocks = [peer["ipBlock"] for r in egress for peer in r.get("to", []) if "ipBlock" in peer]
    if role in ("deliver", "retry"):
        by_cidr = {b["cidr"]: set(b["except"]) for b in blocks}
        assert set(by_cidr) == {"0.0.0.0/0", "::/0"}
        assert set(PRIVATE_V4) <= by_cidr["0.0.0.0/0"]
        assert set(PRIVATE_V6) <= by_cidr["::/0"]
    else:
        assert blocks == []
    assert all(r.get("to") for r in egress), "an egress rule without `to` opens everything"
    # Ingress: the metrics port from Prometheus; the admin's API from the ingress only.
    assert all(r.get("from") and r.get("ports") for r in ingress)
    opened = {p["port"] for r in ingress for p in r["ports"]}
    [container] = pod["spec"]["containers"]
    assert opened == {p["name"] for p in container["ports"]}
    assert opened == ({"http", "metrics"} if role == ADMIN else {"metrics"})
