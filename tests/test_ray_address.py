"""Issue 25: a Ray address that cannot be joined is a one-line error naming workers.address, at once (Ray
itself retries an unreachable head node for minutes). No cluster is started here."""

import socket

import pytest

from humpback.errors import ConfigError, HumpbackError
from humpback.generation.remote import check_address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nobody_answers_at_is_named_with_what_to_do():
    port = free_port()
    with pytest.raises(HumpbackError, match=rf"^workers.address '127.0.0.1:{port}': nothing answers at "
                                            rf"127.0.0.1:{port} \(Connection refused\); start the head node there "
                                            rf"\(`ray start --head --port {port}`\)"):
        check_address(f"127.0.0.1:{port}")
    with pytest.raises(HumpbackError, match="nothing answers"):
        check_address(f"ray://127.0.0.1:{port}")


@pytest.mark.parametrize("address", ["head", "head:port", ":6379", "ray://head"])
def test_an_address_that_is_not_one_says_the_forms(address):
    with pytest.raises(ConfigError, match=rf"workers.address '{address}': expected HOST:PORT .* or auto"):
        check_address(address)


def test_a_listening_address_and_auto_pass():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
    check_address("auto")


def test_the_engine_checks_the_address_before_ray_tries(monkeypatch):
    ray = pytest.importorskip("ray")
    from humpback.config import WorkersConfig
    from humpback.generation.remote import RayEngine

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("ray.init was called"))
    with pytest.raises(HumpbackError, match="nothing answers"):
        RayEngine(WorkersConfig(engine="ray", address=f"127.0.0.1:{free_port()}"), log=lambda _: None)


def test_rays_own_failure_to_join_is_one_line(monkeypatch):
    ray = pytest.importorskip("ray")
    from humpback.config import WorkersConfig
    from humpback.generation.remote import RayEngine

    def init(**kw):
        raise ConnectionError("Could not read 'session_name' from GCS.\n  did GCS start successfully?")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(HumpbackError) as e:
            RayEngine(WorkersConfig(engine="ray", address=address), log=lambda _: None)
    assert str(e.value) == (f"[ray] could not join the Ray cluster at workers.address '{address}': ConnectionError: "
                            "Could not read 'session_name' from GCS. did GCS start successfully? (is its head node "
                            "running the same Ray version as this machine?)")


def test_a_local_cluster_that_does_not_start_is_one_line(monkeypatch):
    ray = pytest.importorskip("ray")
    from humpback.config import WorkersConfig
    from humpback.generation.remote import RayEngine

    def init(**kw):
        raise RuntimeError("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(HumpbackError, match=r"^\[ray\] could not start a local Ray cluster: RuntimeError: The current "
                                            r"node timed out during startup\. .*\(a start that times out means the "
                                            r"machine is too busy: retry, or run with workers.engine: local\)$"):
        RayEngine(WorkersConfig(engine="ray"), log=lambda _: None)
