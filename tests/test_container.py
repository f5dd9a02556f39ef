"""The worker image (deploy/Containerfile) built and run with a real container runtime:
podman with runc, from a Debian base made by debootstrap (no registry is needed), built as
the README says: one `podman build` of the checkout, nothing made on the host first (the
image's build stage installs syncctl and its dependencies from the package index). Marked
`container`: it skips locally without podman and runs in CI, which installs podman, runc,
debootstrap and podman-compose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT, require_tool
from tests.httpsources import HTTPSource, closed_port, json_body

pytestmark = [pytest.mark.container, pytest.mark.slow]

BASE = "localhost/syncctl-base:bookworm"
# Without CAP_SYS_RESOURCE the runtime cannot raise limits it is not told: name them.
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
TICK_WAIT = 150  # seconds: the next minute, plus a sync, plus a slow machine


def podman(*args: str, check: bool = True, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [shutil.which("podman") or "podman", "--runtime", "runc", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 sources or sources.list)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        if path.is_file():
            for line in path.read_text().splitlines():
                match = re.match(r"\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s*", line)
                if match:
                    return match.group(1)
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    """A minimal Debian bookworm with python3: made by debootstrap unless it exists."""
    require_tool("podman")
    require_tool("runc")
    if podman("image", "exists", BASE, check=False).returncode == 0:
        yield BASE
        return
    debootstrap = require_tool("debootstrap")
    rootfs = tmp_path_factory.mktemp("rootfs")
    subprocess.run(
        [debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
         "bookworm", str(rootfs), apt_mirror()],
        check=True, capture_output=True, timeout=900,
    )
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run([shutil.which("podman"), "import", "-", BASE], stdin=tar.stdout, check=True,
                   capture_output=True, timeout=600)
    tar.wait(timeout=60)
    shutil.rmtree(rootfs, ignore_errors=True)
    yield BASE
    podman("rmi", "-f", BASE, check=False)


def host_ca_bundle() -> list[str]:
    """`--secret id=cacert,src=…`: the CA bundle the host's pip trusts, for the build stage's
    pip (where a proxy inspects TLS, the host trusts its CA and the base image does not)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and Path(candidate).is_file():
            return ["--secret", f"id=cacert,src={candidate}"]
    return []


@pytest.fixture(scope="module")
def image(base_image):
    """The worker image, built as the README says, from a clean checkout in one command:
    `podman build --format docker -t TAG -f deploy/Containerfile .` at the checkout's root.
    No wheels, no download on the host: the build stage fetches syncctl's dependencies (the
    `postgres` extra too) for the image's own Python. Only the environment is added: the
    local base, the host's CA bundle and the limits this machine's runtime needs."""
    tag = f"localhost/syncctl-test:{uuid.uuid4().hex[:8]}"
    podman("build", "--format", "docker", "-t", tag, "-f", "deploy/Containerfile",
           *LIMITS, *host_ca_bundle(), "--build-arg", f"BASE={base_image}", ".",
           cwd=ROOT, timeout=900)
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_the_image_holds_syncctl_and_its_virtualenv_not_the_build(image):
    [config] = json.loads(podman("image", "inspect", image).stdout)
    assert config["Config"]["User"] == "syncctl"
    assert config["Config"]["Entrypoint"] == ["syncctl-tick"]
    assert config["Healthcheck"]["Test"] == ["CMD", "syncctl-tick", "--health"]  # needs --format docker
    probe = podman("run", "--rm", "--no-healthcheck", *LIMITS, "--entrypoint", "sh", image, "-c",
                   "syncctl --help >/dev/null && python -c 'import psycopg; print(psycopg.pq.__impl__)'"
                   " && ls /src /tmp/wheels /opt/syncctl/bin/pip 2>&1 | grep -c 'No such file'")
    assert probe.stdout.split() == ["binary", "3"], probe.stdout + probe.stderr  # no source, wheels or pip


@pytest.fixture
def worker(image):
    """A running worker container on the host network, with its own volume."""
    name = f"syncctl-test-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    podman("run", "-d", "--name", name, "--network", "host", *LIMITS, "-e", "API_TOKEN=s3cr3t-in-env",
           "-v", f"{volume}:/var/lib/syncctl", image)
    yield name
    podman("rm", "-f", "-t", "0", name, check=False)
    podman("volume", "rm", "-f", volume, check=False)


def in_worker(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return podman("exec", name, *args, check=check, timeout=120)


def wait_for_log(name: str, integration: str, status: str) -> dict:
    deadline = time.monotonic() + TICK_WAIT
    while time.monotonic() < deadline:
        out = in_worker(name, "syncctl", "history", integration, "--json").stdout
        logs = [log for log in json.loads(out or "[]") if log["status"] == status]
        if logs:
            return logs[0]
        time.sleep(2)
    raise AssertionError(f"no {status} log for {integration} within {TICK_WAIT} s")


def test_the_worker_syncs_on_its_own_clock_as_non_root_quietly_and_reports_failures(worker):
    with HTTPSource() as source:
        seen = []

        def items(handler):
            seen.append(handler.headers.get("Authorization"))
            json_body([{"id": 1}, {"id": 2}])(handler)

        url = source.add("/items", items)
        in_worker(worker, "syncctl", "add", "items", "--url", url, "--interval", "1m",
                  "--header", "Authorization: Bearer ${API_TOKEN}")

        success = wait_for_log(worker, "items", "SUCCESS")

        assert success["trigger"] == "schedule" and success["records_count"] == 2
        assert seen[0] == "Bearer s3cr3t-in-env"  # secrets come from the container's environment
        status = in_worker(worker, "cat", "/proc/1/status").stdout
        assert re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1) != "0"
        assert in_worker(worker, "id", "-u").stdout.strip() != "0"
        assert podman("healthcheck", "run", worker, check=False).returncode == 0
        assert podman("logs", worker).stdout + podman("logs", worker).stderr == ""  # a quiet tick

        # A failing integration: its one line reaches the container log.
        in_worker(worker, "syncctl", "add", "broken", "--url", f"http://127.0.0.1:{closed_port()}/x",
                  "--interval", "1m")
        wait_for_log(worker, "broken", "FAILED")
        deadline = time.monotonic() + 30
        logs = ""
        while "broken" not in logs and time.monotonic() < deadline:
            time.sleep(1)
            result = podman("logs", worker)
            logs = result.stdout + result.stderr
        lines = [line for line in logs.splitlines() if line.strip()]
        assert lines and all(line.startswith("syncctl: broken: connection refused") for line in lines), logs

    stopped = time.monotonic()
    podman("stop", "-t", "30", worker)
    assert time.monotonic() - stopped < 30  # the tick loop passes SIGTERM on and exits itself
    assert podman("inspect", worker, "--format", "{{.State.ExitCode}}").stdout.strip() == "143"


def test_the_image_syncs_into_postgresql_given_a_url(image, pg_url):
    with HTTPSource() as source:
        url = source.add("/items", json_body([{"id": 1}, {"id": 2}]))

        def syncctl(*args: str) -> subprocess.CompletedProcess:
            return podman("run", "--rm", "--no-healthcheck", "--network", "host", *LIMITS, "-e", f"SYNCCTL_DB={pg_url}",
                          "--entrypoint", "syncctl", image, *args, check=False)

        added = syncctl("add", "items", "--url", url)
        synced = syncctl("run-due")
        listed = syncctl("list", "--json")

    assert (added.returncode, added.stderr) == (0, ""), added.stderr  # not exit 3 naming the extra
    assert (synced.returncode, synced.stdout, synced.stderr) == (0, "", "")
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["last_status"], row["records_count"]) == ("items", "SUCCESS", 2)


def test_the_compose_file_is_valid_and_runs_two_workers_on_postgresql():
    pytest.importorskip("podman_compose", reason="pip install podman-compose (in the test extra)")
    result = subprocess.run([sys.executable, "-m", "podman_compose", "-f", "compose.yaml", "config"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT / "deploy")
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert re.search(r"^  postgres:", config, re.MULTILINE) and re.search(r"^  worker:", config, re.MULTILINE)
    assert "replicas: 2" in config
    assert "SYNCCTL_DB: postgresql://syncctl@postgres/syncctl" in config
    assert "- syncctl-tick" in config and "- --health" in config
    # `up --build` builds the image from the checkout itself, as `docker build` does.
    assert f"context: {ROOT}\n" in config and "dockerfile: deploy/Containerfile" in config


def test_the_container_is_provisioned_from_a_mounted_file_alone(image, pg_url, tmp_path):
    manifest = tmp_path / "integrations.toml"
    manifest.write_text('[integrations.items]\nurl = "http://127.0.0.1:9/items"\ninterval = "15m"\n\n'
                        '[[notify]]\nurl = "json://127.0.0.1:9/hook"\nevents = ["failing"]\n')
    mount = ["-v", f"{manifest}:/etc/syncctl/integrations.toml:ro,Z"]
    name = f"syncctl-provisioned-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", "host", *LIMITS, "-e", f"SYNCCTL_DB={pg_url}", *mount, image)
    try:
        listed: list = []
        deadline = time.monotonic() + 120
        while not listed and time.monotonic() < deadline:  # apply runs before the first tick
            shown = podman("run", "--rm", "--no-healthcheck", "--network", "host", *LIMITS, "-e", f"SYNCCTL_DB={pg_url}",
                           "--entrypoint", "syncctl", image, "list", "--json", check=False)
            listed = json.loads(shown.stdout) if shown.returncode == 0 else []
            time.sleep(0 if listed else 2)
        exported = podman("run", "--rm", "--no-healthcheck", "--network", "host", *LIMITS, "-e", f"SYNCCTL_DB={pg_url}",
                          "--entrypoint", "syncctl", image, "export")
    finally:
        podman("rm", "-f", name, check=False)
    assert [(r["name"], r["interval_seconds"]) for r in listed] == [("items", 900)], "the file's integration"
    assert 'events = [\n    "failing",\n]' in exported.stdout, exported.stdout  # and its notification target


def test_a_mounted_file_that_does_not_apply_stops_the_container_with_its_reason(image, tmp_path):
    manifest = tmp_path / "integrations.toml"
    manifest.write_text('[integrations.items]\nurl = "http://127.0.0.1:9/items"\nintervall = "15m"\n')
    ran = podman("run", "--rm", "--no-healthcheck", *LIMITS, "-v", f"{manifest}:/etc/syncctl/integrations.toml:ro,Z",
                 image, check=False, timeout=120)
    assert ran.returncode == 2, ran.stderr
    assert "unknown key 'intervall'" in ran.stderr and "did you mean 'interval'" in ran.stderr, ran.stderr
