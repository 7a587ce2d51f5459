"""Generators on a Ray cluster (``workers.engine: ray``; docs/ray.md).

The driver keeps the run: it reads the stage's rows, renders the prompts, writes every shard file
and marker, and runs the stage's statistics. Only the model calls travel: a :class:`RemoteGenerator`
stands in for a local generator and sends each call (one shard's prompts) to a free worker of its
pool, an actor that holds the model through our own backend (hf on CPU, vllm on GPUs). A shard is one
call on one worker with the same prompts, batching and per-prompt seeds as in a local run, so it
writes the same files. Ray restarts a worker that dies and retries its call (``workers.max_retries``);
the shards already written are kept by the run store as for any resumed run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..errors import ConfigError, HumpbackError
from .base import Usage, generator_name

if TYPE_CHECKING:
    from ..config import GenerationConfig, WorkersConfig

INSTALL = "workers.engine 'ray' needs Ray: pip install 'humpback[ray]' (or: pip install 'ray>=2.40')"
# The methods of the Generator protocol a stage may call on a worker's model.
CALLS = ("generate", "choice_probs", "loglik", "answer_logprobs")


class WorkerError(HumpbackError):
    """A Ray worker could not do its part (a model path it cannot read, a failed call)."""


def import_ray():
    """The ``ray`` module, or a one-line error saying what to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL) from None
    return ray


@dataclass(frozen=True)
class ModelSpec:
    """What a worker loads: the arguments of :func:`humpback.generation.load_generator`, all picklable.
    Paths are the driver's (the run folder's adapters, a converted base model): the workers must see them
    at the same place (a shared file system, as a SLURM array needs), or fetch them from
    ``workers.model_store`` (``sources``; :mod:`.model_store`)."""

    generation: "GenerationConfig"
    model: str
    adapter: Optional[str]
    revision: Optional[str]
    seed: int
    tokenizer: Any = None  # the driver's chat tokenizer, so the workers encode exactly as a local run does
    # workers.model_store: (driver path, published URL) of each local model folder; a worker fetches them
    sources: tuple[tuple[str, str], ...] = ()

    def paths(self) -> list[str]:
        """The local paths the worker must read (a hub id is not one)."""
        out = [self.adapter] if self.adapter else []
        if self.model.startswith(("/", ".")) or Path(self.model).exists():
            out.insert(0, self.model)
        return out


def check_readable(spec: ModelSpec, host: str) -> None:
    """Fail with the path when a worker cannot read a model file the driver named."""
    for p in spec.paths():
        path = Path(p)
        if not path.exists():
            raise WorkerError(f"Ray worker on {host} cannot read {p}: no such file or folder there (the workers must "
                              f"see the run folder and the converted models at the driver's paths; docs/ray.md)")
        if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
            raise WorkerError(f"Ray worker on {host} cannot read {p}: permission denied")


def fetched(spec: ModelSpec, host: str) -> ModelSpec:
    """``spec`` with the model paths published to ``workers.model_store`` replaced by this machine's copies."""
    if not spec.sources:
        return spec
    from ..cache import cache_root
    from .model_store import fetch

    local = {path: str(fetch(url, cache_root(), host)) for path, url in spec.sources}
    return dataclasses.replace(spec, model=local.get(spec.model, spec.model),
                               adapter=local.get(spec.adapter, spec.adapter) if spec.adapter else None, sources=())


class ModelWorker:
    """A Ray actor's body: the run's models, each loaded on its first call (after a restart, again),
    answering one call (a shard's prompts) at a time."""

    def __init__(self):
        self.models: dict[str, Any] = {}

    def _model(self, key: str, spec_ref: list):
        if key not in self.models:
            import socket

            import ray

            from . import load_generator

            spec = ray.get(spec_ref[0])
            # A load failure is kept and raised by every call, so the driver gets it as the stage's error.
            try:
                spec = fetched(spec, socket.gethostname())
                check_readable(spec, socket.gethostname())
                self.models[key] = load_generator(spec.generation, spec.model, adapter=spec.adapter,
                                                  revision=spec.revision, progress=False, seed=spec.seed,
                                                  tokenizer=spec.tokenizer)
            except HumpbackError as e:
                self.models[key] = e
        model = self.models[key]
        if isinstance(model, BaseException):
            raise model
        return model

    def call(self, key: str, spec_ref: list, method: str, args: tuple) -> tuple[Any, Usage, str]:
        """(result, the usage of this call, the generator's name). ``spec_ref``: [ObjectRef of the
        ModelSpec], fetched only when the model is not loaded yet."""
        generator = self._model(key, spec_ref)
        before = generator.usage
        result = getattr(generator, method)(*args)
        return result, generator.usage - before, generator.name

    def drop(self, key: str) -> None:
        model = self.models.pop(key, None)
        if model is not None and not isinstance(model, BaseException):
            model.close()

    def pid(self) -> int:
        return os.getpid()


class RemoteGenerator:
    """A :class:`~humpback.generation.base.Generator` whose calls run on the run's Ray workers, each of
    which loads the model on its first call. Calls may come from several driver threads at once (one per
    shard in flight); each goes to a free worker. ``usage`` is the calling thread's own running total, so
    a shard's usage is the difference of two readings in its thread, as with a local generator."""

    def __init__(self, engine: "RayEngine", spec: ModelSpec):
        import uuid

        self.engine, self.spec, self._ray = engine, spec, engine._ray
        self.key = uuid.uuid4().hex
        self._spec_ref = [self._ray.put(spec)]
        self._local = threading.local()
        self._lock = threading.Lock()
        self.total = Usage()
        self.name = generator_name(spec.model, spec.revision, spec.adapter)

    @property
    def usage(self) -> Usage:
        return getattr(self._local, "usage", Usage())

    def _call(self, method: str, *args: Any) -> Any:
        from ..turns import waiting

        ray, actor = self._ray, None
        try:
            with waiting():  # other shards' code runs meanwhile (humpback.turns)
                actor = self.engine.free.get()
                result, used, self.name = ray.get(actor.call.remote(self.key, self._spec_ref, method, tuple(args)))
        except ray.exceptions.RayActorError as e:
            raise WorkerError(f"a Ray worker holding {self.spec.model} died after being restarted "
                              f"{self.engine.workers.max_retries} times (workers.max_retries): "
                              f"{_first_line(e)}") from e
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None) or e
            if isinstance(cause, HumpbackError):
                raise cause from None
            raise WorkerError(f"a Ray worker's {method} failed: {type(cause).__name__}: {_first_line(cause)}") from e
        finally:
            if actor is not None:
                self.engine.free.put(actor)
        self._local.usage = self.usage + used
        with self._lock:
            self.total = self.total + used
        return result

    def generate(self, prompts, params):
        return self._call("generate", list(prompts), params)

    def choice_probs(self, prompts, choices):
        return self._call("choice_probs", list(prompts), list(choices))

    def loglik(self, prompts, continuations):
        return self._call("loglik", list(prompts), list(continuations))

    def answer_logprobs(self, prompts, answers):
        return self._call("answer_logprobs", list(prompts), [tuple(a) for a in answers])

    def close(self) -> None:
        """Free the model on every worker (the workers stay for the next model)."""
        try:
            self._ray.get([a.drop.remote(self.key) for a in self.engine.actors])
        except self._ray.exceptions.RayError:  # a dead worker holds nothing; the stage reports why it died
            pass


class RayEngine:
    """The run's Ray cluster, joined (``workers.address``) or started on this machine for the run, and
    its ``workers.count`` workers, made on first use and shared by every model of the run (a stage that
    uses two models, such as DPO's answers and their judge, needs no second set of resources)."""

    def __init__(self, workers: "WorkersConfig", log=print):
        ray = import_ray()
        self.workers, self._ray, self.actors, self.log = workers, ray, [], log
        self.published: dict[str, str] = {}  # driver path -> its URL in workers.model_store
        self.free: "queue.Queue" = queue.Queue()
        self.owned = not ray.is_initialized()
        dashboard = None
        if self.owned:
            import humpback

            if workers.address:
                check_address(workers.address)
                with _said("join the Ray cluster at workers.address " + repr(workers.address),
                           "is its head node running the same Ray version as this machine?"):
                    ctx = ray.init(address=workers.address, log_to_driver=False)
            else:
                # Workers of a local cluster import this humpback (a source checkout need not be installed).
                src = str(Path(humpback.__file__).resolve().parent.parent)
                path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
                # Ray adds 15 to its workers' niceness (for a driver doing the work); here the workers do
                # the run's work, and at +15 any other load on the machine starves them. With 0 they run at
                # this process's niceness; RAY_worker_niceness set by the user wins.
                with _env_default("RAY_worker_niceness", "0"), _said(
                        "start a local Ray cluster", "a start that times out means the machine is too busy: "
                        "retry, or run with workers.engine: local"):
                    ctx = ray.init(num_cpus=workers.local_cpus, log_to_driver=False,
                                   runtime_env={"env_vars": {"PYTHONPATH": path}})
            dashboard = ctx.dashboard_url
        res = ray.cluster_resources()
        where = ("the cluster this process is connected to" if not self.owned else
                 f"joined the cluster at {workers.address}" if workers.address else "started a local cluster")
        log(f"[ray] {where}: {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; {workers.count} workers"
            + (f"; dashboard: http://{dashboard}" if dashboard else ""))

    def _start_workers(self, spec: ModelSpec) -> None:
        w = self.workers
        gpus = w.gpus_per_worker
        if gpus is None:
            gpus = spec.generation.tensor_parallel_size if spec.generation.backend == "vllm" else 0
        have = self._ray.cluster_resources()
        for what, each, key in (("CPUs", w.cpus_per_worker, "CPU"), ("GPUs", gpus, "GPU")):
            if each and w.count * each > have.get(key, 0):
                short = (f"workers.count={w.count} workers x {each:g} {what} need {w.count * each:g} {what}; "
                         f"the cluster has {have.get(key, 0):g}")
                if self.owned and not w.address:  # a local cluster never grows: the workers would wait for ever
                    raise ConfigError(f"{short} (lower workers.count or workers.cpus_per_worker/gpus_per_worker, "
                                      f"or raise workers.local_cpus)")
                self.log(f"[ray] WARNING: {short}; workers wait until the cluster grows")
        # pid() answers while a call runs (the tests kill a worker mid-shard); the engine's queue gives each
        # worker one call at a time.
        actor = self._ray.remote(ModelWorker).options(num_cpus=w.cpus_per_worker, num_gpus=gpus,
                                                      max_restarts=w.max_retries, max_task_retries=w.max_retries,
                                                      max_concurrency=2)
        self.actors = [actor.remote() for _ in range(w.count)]
        for a in self.actors:
            self.free.put(a)

    def generator(self, spec: ModelSpec) -> RemoteGenerator:
        # The driver's relative paths (a run folder given as runs/NAME) mean nothing in a worker's directory.
        local = lambda p: str(Path(p).resolve()) if p and Path(p).exists() else p  # noqa: E731
        spec = dataclasses.replace(spec, model=local(spec.model), adapter=local(spec.adapter))
        if self.workers.model_store:
            spec = self._published(spec)
        if not self.actors:
            self._start_workers(spec)
        return RemoteGenerator(self, spec)

    def _published(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` with its local model folders uploaded to ``workers.model_store`` (once per content)."""
        from ..store.identity import model_identity
        from .model_store import publish

        sources = []
        for path in spec.paths():
            if path not in self.published:
                digest = model_identity(path, None)["content"]
                self.published[path] = publish(path, self.workers.model_store, digest, self.log)
            sources.append((path, self.published[path]))
        return dataclasses.replace(spec, sources=tuple(sources))

    def pids(self) -> list[int]:
        """The workers' process ids (the tests kill them mid-stage)."""
        return self._ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors, self.free = [], queue.Queue()
        if self.owned and self._ray.is_initialized():
            self._ray.shutdown()


def check_address(address: str, timeout: float = 10.0) -> None:
    """A HumpbackError naming ``workers.address`` when it is not a Ray address or nothing answers there
    (Ray itself retries an unreachable head node for minutes before it gives up). ``auto`` is Ray's."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"workers.address {address!r}: expected HOST:PORT (the head node's address that "
                          f"`ray start --head` prints), ray://HOST:PORT (Ray Client) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise HumpbackError(f"workers.address {address!r}: nothing answers at {host}:{port} "
                            f"({e.strerror or type(e).__name__}); start the head node there (`ray start --head "
                            f"--port {port}`), or leave workers.address empty for a local cluster") from None


@contextlib.contextmanager
def _said(doing: str, hint: str):
    """Ray's error while ``doing`` as one HumpbackError line with ``hint``, instead of Ray's traceback."""
    try:
        yield
    except HumpbackError:
        raise
    except Exception as e:
        raise HumpbackError(f"[ray] could not {doing}: {type(e).__name__}: {_first_line(e)} ({hint})") from e


@contextlib.contextmanager
def _env_default(name: str, value: str):
    """``name=value`` in this process's environment (for the processes it starts) unless already set."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."

