"""docker-compose.yml and docker/Dockerfile, read as data (Docker cannot run here).

Checks what would break the stack: the Spark image and the pyspark pin drifting apart,
commands the official image's entrypoint or our CLI would reject, a worker pointing at
another master URL, containers that do not share the lake, the SQL endpoint starting before
the build has finished.
"""

import re
import tomllib
from pathlib import Path

import yaml  # PyYAML: the sql extra

from bitcipher.cli import parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]
WORKERS = ["spark-worker-1", "spark-worker-2"]
OURS = WORKERS + ["build", "sql"]  # the services that run Python, on the bit-cipher image


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def spark_version() -> str:
    """The tested pyspark (constraints.txt), which the images must match; it must also lie in
    the package's declared range."""
    pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip().startswith("pyspark==")]
    assert len(pins) == 1, pins
    version = pins[0].split("==")[1]
    declared = [d for d in pyproject()["project"]["dependencies"] if d.startswith("pyspark")]
    assert len(declared) == 1, declared
    from packaging.specifiers import SpecifierSet

    assert version in SpecifierSet(declared[0][len("pyspark"):]), declared
    return version


def official_image_ok(image: str) -> bool:
    """spark:<version>-scala2.13-java17-python3-ubuntu (or apache/spark:...), at our pin."""
    name, _, tag = image.partition(":")
    return name in ("spark", "apache/spark") and re.fullmatch(
        rf"{re.escape(spark_version())}-scala2\.13-java(17|21)(-python3)?(-r)?-ubuntu", tag) \
        is not None


def port_map(service: str) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for spec in SERVICES[service].get("ports", []):
        host, container = str(spec).split(":")[-2:]
        out[int(container)] = int(host)
    return out


def mounts(service: str) -> dict[str, str]:
    """container path -> source (a named volume or a host path)."""
    out = {}
    for spec in SERVICES[service].get("volumes", []):
        spec = re.sub(r":(ro|rw)$", "", spec)  # the source may hold ":-" (a default)
        source, target = spec.rsplit(":", 1)
        out[target] = source
    return out


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_services():
    assert set(SERVICES) == {"spark-master", *WORKERS, "build", "sql"}


def test_images_follow_the_pyspark_pin():
    assert spark_version() == "4.1.1"
    master = SERVICES["spark-master"]["image"]
    assert official_image_ok(master), master
    arg = re.search(r"^ARG SPARK_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert arg and arg.group(1) == master  # the Dockerfile's default is the master's image
    assert re.search(r"^FROM \$\{SPARK_IMAGE\}$", DOCKERFILE, re.M)
    for name in OURS:
        service = SERVICES[name]
        assert service["build"]["args"]["SPARK_IMAGE"] == master, name
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["image"].endswith(f"-spark{spark_version()}"), service["image"]


def test_dockerfile_installs_the_package_with_python_of_the_pin():
    requires = pyproject()["project"]["requires-python"]
    minor = re.search(r">=3\.(\d+)", requires).group(1)
    assert f"python3.{minor} -m venv /opt/bitcipher/venv" in DOCKERFILE
    assert re.search(r"pip install [^\n]*\"/opt/bitcipher/src\[sql\]\"", DOCKERFILE)
    assert "PYSPARK_PYTHON=/opt/bitcipher/venv/bin/python" in DOCKERFILE
    assert "python -m bitcipher.runtime.jars --no-archive" in DOCKERFILE
    # every path the package build needs is copied into the image and not ignored
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    for path in ["pyproject.toml", "README.md", "pipeline", "schemas"]:
        assert re.search(rf"^COPY [^\n]*\b{re.escape(path)}\b", DOCKERFILE, re.M), path
        assert f"!{path}" in ignore or f"!{path}/" in ignore, path
        assert (ROOT / path).exists()
    readme = pyproject()["project"]["readme"]
    assert readme == "README.md"


def test_master():
    master = SERVICES["spark-master"]
    command = master["command"]
    # the official entrypoint passes any command other than driver/executor through as is
    assert command[:2] == ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.master.Master"]
    assert option(command, "--host") == master["hostname"] == "spark-master"
    assert option(command, "--port") == "7077" and option(command, "--webui-port") == "8080"
    assert port_map("spark-master") == {7077: 7077, 8080: 8080}


def master_url() -> str:
    command = SERVICES["spark-master"]["command"]
    return f"spark://{option(command, '--host')}:{option(command, '--port')}"


def test_workers():
    ui_ports = set()
    for name in WORKERS:
        worker = SERVICES[name]
        command = worker["command"]
        assert command[:2] == ["/opt/spark/bin/spark-class",
                               "org.apache.spark.deploy.worker.Worker"]
        assert command[-1] == master_url()
        assert int(option(command, "--cores")) >= 1
        assert re.fullmatch(r"\d+[mg]", option(command, "--memory"))
        ui = int(option(command, "--webui-port"))
        assert port_map(name) == {ui: ui}
        ui_ports.add(ui)
        assert "spark-master" in worker["depends_on"]
        # executors read the shards and write the tables: same paths as the driver
        assert mounts(name) == mounts("build")
        assert worker["environment"]["PYSPARK_PYTHON"] == "/opt/bitcipher/venv/bin/python"
    assert len(ui_ports) == len(WORKERS) and 8080 not in ui_ports


def test_build_job():
    job = SERVICES["build"]
    command = job["command"]
    assert command[:2] == ["bitcipher", "build"]
    args = parser().parse_args(command[1:])  # every flag exists with a valid value
    assert args.master == master_url()
    volumes = mounts("build")
    assert volumes[args.corpus[0]].startswith("${BITCIPHER_CORPUS")  # the corpus, read-only
    assert any(v.endswith(f"{args.corpus[0]}:ro") for v in job["volumes"])
    assert volumes[args.lake] == "lake" and "lake" in COMPOSE["volumes"]
    assert job["restart"] == "no"  # one-shot
    assert set(job["depends_on"]) == {"spark-master", *WORKERS}


def test_sql_endpoint():
    sql = SERVICES["sql"]
    command = sql["command"]
    assert command[:2] == ["bitcipher", "serve"]
    args = parser().parse_args(command[1:])
    assert args.master == master_url()
    assert args.host == "0.0.0.0"  # reachable through the published port
    assert port_map("sql") == {args.port: 10000}
    # the lake the build wrote, and only after the build succeeded
    build_lake = option(SERVICES["build"]["command"], "--lake")
    assert args.lake == build_lake and mounts("sql")[args.lake] == mounts("build")[build_lake]
    assert sql["depends_on"]["build"]["condition"] == "service_completed_successfully"


def test_readme_documents_the_stack():
    readme = (ROOT / "README.md").read_text()
    assert "docker-compose.yml" in readme and "docker compose up" in readme
    assert "jdbc:hive2://localhost:10000" in readme
