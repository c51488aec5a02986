"""Issue 14, rendering: NAME@.service, NAME.socket / NAME@.socket, %i only where unitgen puts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unitgen.render.units import render
from unitgen.spec import load_spec, parse_spec
from unitgen.staging.check import check_many
from unitgen.staging.tree import write_tree

ROOT = Path(__file__).parent.parent


def rendered(name: str = "pool", **raw: Any) -> dict[str, str]:
    spec = parse_spec({"description": "Pool", "exec": ["/usr/bin/worker"], **raw}, name=name, where=f"{name}.toml")
    return {str(f.path): f.content.decode() for f in render(spec)}


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_instances_render_a_template_and_no_plain_unit() -> None:
    files = rendered(instances=["a", "b"])
    units = sorted(p for p in files if p.startswith("usr/lib/systemd/system/"))
    assert units == ["usr/lib/systemd/system/pool@.service"]
    service = files["usr/lib/systemd/system/pool@.service"]
    assert lines(service, "Environment=UNITGEN_INSTANCE") == ["Environment=UNITGEN_INSTANCE=%i"]
    assert lines(service, "Description=") == ["Description=Pool (%i)"]
    # One RuntimeDirectory= for all instances, kept when one of them stops while others run.
    assert lines(service, "RuntimeDirectory") == [
        "RuntimeDirectory=pool",
        "RuntimeDirectoryMode=0755",
        "RuntimeDirectoryPreserve=yes",
    ]
    launcher = files["usr/libexec/pool/pool-launcher"]
    assert "'lock_file': '/run/pool/{instance}.pid'," in launcher


@pytest.mark.parametrize(
    ("argv", "exec_start"),
    [
        pytest.param(["/usr/bin/w", "{instance}"], "/usr/bin/w %i", id="whole-arg"),
        pytest.param(["/usr/bin/w", "--q={instance}"], "/usr/bin/w --q=%i", id="in-arg"),
        pytest.param(["/usr/bin/w", "%i", "{instance}"], "/usr/bin/w %%i %i", id="user-specifier-escaped"),
        pytest.param(["/usr/bin/w", "a b {instance}"], '/usr/bin/w "a b %i"', id="quoted"),
        pytest.param(["/usr/bin/w", "$X-{instance}%"], "/usr/bin/w $$X-%i%%", id="dollar-percent"),
        pytest.param(["/usr/bin/w", '"{instance}"'], '/usr/bin/w "\\"%i\\""', id="quotes"),
    ],
)
def test_the_placeholder_becomes_percent_i_and_nothing_else_does(argv: list[str], exec_start: str) -> None:
    service = rendered(instances=["a"], exec=argv, description="100% %i")["usr/lib/systemd/system/pool@.service"]
    assert lines(service, "ExecStart=") == [f"ExecStart=/usr/libexec/pool/pool-launcher -- {exec_start}"]
    assert lines(service, "Description=") == ["Description=100%% %%i (%i)"]


def test_an_instance_environment_is_a_drop_in_of_that_instance() -> None:
    files = rendered(instances={"eu": {"environment": {"REGION": "eu-%i $HOME"}}, "us": {}})
    assert files["usr/lib/systemd/system/pool@eu.service.d/unitgen-instance.conf"].splitlines()[1:] == [
        "[Service]",
        'Environment="REGION=eu-%%i $HOME"',
    ]
    assert not any("pool@us.service.d" in p for p in files)


def test_listen_renders_a_socket_unit_the_service_requires() -> None:
    files = rendered(name="echo", listen=["tcp:80", "tcp:[::1]:8080", "unix:/run/echo/api.sock"])
    socket = files["usr/lib/systemd/system/echo.socket"]
    assert lines(socket, "ListenStream=") == [
        "ListenStream=80",
        "ListenStream=[::1]:8080",
        "ListenStream=/run/echo/api.sock",
    ]
    assert lines(socket, "FileDescriptorName=") == ["FileDescriptorName=echo"]
    assert lines(socket, "WantedBy=") == ["WantedBy=sockets.target"] and "ReusePort" not in socket
    service = files["usr/lib/systemd/system/echo.service"]
    assert "Requires=echo.socket" in service.splitlines() and "After=echo.socket" in service.splitlines()
    assert lines(service, "Also=") == ["Also=echo.socket"]
    # Port 80 without any capability: systemd binds it in PID 1.
    assert lines(service, "CapabilityBoundingSet=") == ["CapabilityBoundingSet="]
    assert lines(service, "AmbientCapabilities=") == ["AmbientCapabilities="]


def test_instances_with_listen_get_a_socket_per_instance_on_one_port() -> None:
    files = rendered(instances=["a", "b"], listen=["tcp:8080", "unix:/run/pool/{instance}.sock"], user="pool")
    socket = files["usr/lib/systemd/system/pool@.socket"]
    assert lines(socket, "ListenStream=") == ["ListenStream=8080", "ListenStream=/run/pool/%i.sock"]
    assert lines(socket, "ReusePort=") == ["ReusePort=yes"]
    assert lines(socket, "SocketUser=") == ["SocketUser=pool"]
    service = files["usr/lib/systemd/system/pool@.service"]
    assert "Requires=pool@%i.socket" in service.splitlines()
    assert lines(service, "Also=") == ["Also=pool@%i.socket"]


def test_a_template_timer_job() -> None:
    files = rendered(instances=["daily"], timer={"on_calendar": "daily"})
    assert "usr/lib/systemd/system/pool@.timer" in files
    timer = files["usr/lib/systemd/system/pool@.timer"]
    assert lines(timer, "Description=") == ["Description=Run pool@%i.service on a schedule: Pool"]


def test_a_plain_service_is_rendered_as_before() -> None:
    service = rendered()["usr/lib/systemd/system/pool.service"]
    assert "%i" not in service and "UNITGEN_INSTANCE" not in service and ".socket" not in service


def test_templates_and_sockets_verify_clean_and_score_no_worse_than_a_plain_service(tmp_path: Path) -> None:
    """systemd-analyze itself: verify instantiates the template; the exposure score of the
    socket-activated port-80 service and of the template is not above the plain hello's."""
    trees = []
    for name in ("hello", "echo", "pool"):
        spec = load_spec(ROOT / "examples" / name / f"{name}.toml")
        write_tree(render(spec), tmp_path / name)
        trees.append((tmp_path / name, name, 1.5))
    hello, echo, pool = check_many(trees)
    assert echo.units == ["echo.service", "echo.socket"] and pool.units == ["pool@.service"]
    for report in (hello, echo, pool):
        assert report.verify_output == "" and report.ok, report
    assert echo.score <= hello.score and pool.score <= hello.score, (hello.score, echo.score, pool.score)
