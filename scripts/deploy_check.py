"""Consistency checks of deploy/ that no schema validator makes (run by scripts/deploy-check.sh).

Usage: deploy_check.py REPO OUT_DIR

Checks that the Kubernetes Deployment, the container image and the systemd unit agree with the
sidecar configs they ship, so that a changed port, probe path or grace period breaks CI instead
of a rollout; writes each shipped sidecar config to OUT_DIR (the ConfigMap's extracted) for
`mcp-sidecar check`. Prints one line per failed check and exits 1 if any failed.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

# shutdown.drain_delay's default (another part of issue 20 adds the key); used when a config
# leaves it out.
DEFAULT_DRAIN_DELAY_S = 5
# Time the backend container gets after the sidecar has exited (deployment.yaml's comment).
BACKEND_STOP_MARGIN_S = 10

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def seconds(value: str) -> float:
    """A humantime duration as the sidecar's configs use them ("30s", "2m", "1h30m", "500ms")."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*(ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        raise ValueError(f"cannot read duration {value!r}")
    return sum(int(n) * units[u] for n, u in parts)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def drain_total(config: dict) -> float:
    shutdown = config.get("shutdown", {})
    grace = seconds(shutdown.get("grace_period", "30s"))
    drain = seconds(shutdown.get("drain_delay", f"{DEFAULT_DRAIN_DELAY_S}s"))
    return grace + drain


def kubernetes(repo: Path, out: Path) -> None:
    k8s = repo / "deploy/kubernetes"
    docs = {}
    for path in sorted(k8s.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc:
                docs[doc["kind"]] = doc
    configmap, deployment = docs["ConfigMap"], docs["Deployment"]
    toml_text = configmap["data"]["sidecar.toml"]
    (out / "kubernetes-sidecar.toml").write_text(toml_text)
    config = tomllib.loads(toml_text)

    pod = deployment["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "mcp-sidecar")
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    check(ports.get("mcp") == port_of(config["listen"]["addr"]),
          "deployment: port `mcp` is not the ConfigMap's listen.addr port")
    check(ports.get("admin") == port_of(config["admin"]["addr"]),
          "deployment: port `admin` is not the ConfigMap's admin.addr port")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        get = sidecar.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") == "admin",
              f"deployment: {probe} is not GET {path} on the admin port")

    pre_stop = sidecar.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    check(pre_stop > 0, "deployment: the sidecar has no preStop sleep")
    needed = pre_stop + drain_total(config) + BACKEND_STOP_MARGIN_S
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace >= needed,
          f"deployment: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + "
          f"drain_delay + grace_period + {BACKEND_STOP_MARGIN_S} = {needed:g}")

    env = {e["name"] for e in sidecar.get("env", [])}
    live = "\n".join(l for l in toml_text.splitlines() if not l.lstrip().startswith("#"))
    for name in sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", live))):
        check(name in env, f"deployment: the config references ${{{name}}}, the container has no such env")

    mounts = {m["mountPath"]: m["name"] for m in sidecar.get("volumeMounts", [])}
    check(mounts.get("/etc/mcp-sidecar") == "config", "deployment: the ConfigMap is not mounted at /etc/mcp-sidecar")
    data_dir = config.get("jobs", {}).get("data_dir")
    check(data_dir in mounts, f"deployment: jobs.data_dir {data_dir!r} is not a mounted volume")
    check("/etc/mcp-sidecar/sidecar.toml" in sidecar.get("args", []),
          "deployment: the sidecar does not run /etc/mcp-sidecar/sidecar.toml")
    limits = sidecar.get("resources", {}).get("limits", {})
    check(str(limits.get("cpu")) == "1", "deployment: the sidecar's CPU limit is not one CPU")

    for init in pod.get("initContainers", []):
        check(init.get("restartPolicy") == "Always",
              f"deployment: {init['name']} is not a native sidecar (restartPolicy: Always)")
    backend = config["upstream"][0]["url"]
    check(re.match(r"https?://127\.0\.0\.1[:/]", backend) is not None,
          f"configmap: the backend {backend} is not on loopback")

    service = docs["Service"]
    check([p["targetPort"] for p in service["spec"]["ports"]] == ["mcp"],
          "service: it must expose the sidecar's `mcp` port and nothing else")


def container(repo: Path, out: Path) -> None:
    parser = DockerfileParser(str(repo / "deploy/Dockerfile"))
    final = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            final = []
        final.append(item)
    instr = {}
    for item in final:
        instr.setdefault(item["instruction"], []).append(item["value"])
    config_path = repo / "deploy/docker/sidecar.toml"
    (out / "docker-sidecar.toml").write_text(config_path.read_text())
    config = tomllib.loads(config_path.read_text())

    check(final[0]["value"].split()[0].startswith("gcr.io/distroless/cc"),
          "Dockerfile: the final stage is not the distroless cc runtime")
    user = instr.get("USER", ["root"])[-1].split(":")[0]
    check(user not in ("root", "0"), "Dockerfile: the runtime user is root")
    exposed = {int(p) for v in instr.get("EXPOSE", []) for p in v.split()}
    check(exposed == {port_of(config["listen"]["addr"]), port_of(config["admin"]["addr"])},
          "Dockerfile: EXPOSE does not match listen.addr and admin.addr of deploy/docker/sidecar.toml")
    check(instr.get("STOPSIGNAL") == ["SIGTERM"], "Dockerfile: STOPSIGNAL is not SIGTERM")
    health = " ".join(instr.get("HEALTHCHECK", []))
    admin = port_of(config["admin"]["addr"])
    check(f'"probe"' in health and f"127.0.0.1:{admin}/healthz" in health,
          "Dockerfile: HEALTHCHECK does not probe the admin /healthz")
    data_dir = config.get("jobs", {}).get("data_dir")
    check(any(data_dir in v for v in instr.get("VOLUME", [])),
          f"Dockerfile: jobs.data_dir {data_dir!r} is not a VOLUME")
    check(any("/etc/mcp-sidecar/sidecar.toml" in v for v in instr.get("CMD", [])),
          "Dockerfile: CMD does not run /etc/mcp-sidecar/sidecar.toml")
    builder = " ".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    check("scripts/dist.sh" in builder, "Dockerfile: the binary is not built by scripts/dist.sh")


def systemd(repo: Path, out: Path) -> None:
    unit = (repo / "deploy/systemd/mcp-sidecar.service").read_text()
    config_path = repo / "deploy/systemd/sidecar.toml"
    (out / "systemd-sidecar.toml").write_text(config_path.read_text())
    config = tomllib.loads(config_path.read_text())
    stop = re.search(r"^TimeoutStopSec=(\S+)$", unit, re.M)
    check(stop is not None and seconds(stop.group(1)) > drain_total(config),
          "systemd: TimeoutStopSec does not exceed shutdown.drain_delay + shutdown.grace_period")
    check("data_dir" not in config.get("jobs", {}),
          "systemd: sidecar.toml sets jobs.data_dir; the unit's StateDirectory is the store")
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=mcp-sidecar",
                "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"):
        check(re.search(rf"^{re.escape(key)}$", unit, re.M) is not None, f"systemd: no `{key}`")


def main() -> int:
    repo, out = Path(sys.argv[1]), Path(sys.argv[2])
    for part in (kubernetes, container, systemd):
        try:
            part(repo, out)
        except (KeyError, StopIteration, ValueError, IndexError) as e:
            failures.append(f"{part.__name__}: cannot read what is checked: {e!r}")
    for f in failures:
        print(f"deploy-check: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
