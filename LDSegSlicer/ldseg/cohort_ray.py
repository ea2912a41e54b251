"""Cohort cases on Ray: one actor per GPU (or per CPU slot) that loads the model once.

Without an address Ray starts embedded on this machine and stops at the end; with one
(`auto`, `ray://head:10001`) the cohort joins that cluster, whose nodes must see the input and
output paths and have ldseg installed.

Fault tolerance (docs.ray.io, ray-core/fault_tolerance/actors): Ray restarts an actor whose
process died (`max_restarts`), rerunning its constructor, i.e. reloading the model. Ray does not
retry the case the actor was on (`max_task_retries=0`): this driver puts it back in the queue for
the next free actor, so it is retried elsewhere, and gives up after MAX_ATTEMPTS deaths on the same
case, so that a case which kills every worker (say, by exhausting memory) is recorded as failed
instead of looping. Cases go one at a time to free actors, so a death costs at most one case.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from .cohort import Case, CohortJob, failed_row, one_line
from .errors import CancelledError, LDSegError

MAX_ATTEMPTS = 3  # tries per case when its worker dies under it
MAX_WORKER_RESTARTS = 20  # per actor; each restart reloads the model
WAIT_SECONDS = 0.5  # how often the driver looks at the cancel flag


@ray.remote(max_restarts=MAX_WORKER_RESTARTS, max_task_retries=0)
class CohortWorker:
    def __init__(self, job: CohortJob) -> None:
        self.runner = job.runner()

    def where(self) -> str:
        return f"{ray.util.get_node_ip_address()} pid {os.getpid()}"

    def run(self, case: Case) -> dict:
        return self.runner.run(case)


def run_on_ray(
    cases: list[Case],
    job: CohortJob,
    workers: int | None,
    address: str | None,
    should_cancel: Callable[[], bool],
    note: Callable[[str], None],
) -> Iterator[tuple]:
    """Yields ("started", case, worker), ("retry", case, reason) and ("finished", row) events."""
    options = {} if address else {"include_dashboard": False}  # "local": a new instance, never a stale one
    try:
        ray.init(address=address or "local", log_to_driver=False, logging_level=logging.WARNING, **options)
    except ConnectionError as error:
        raise LDSegError(f"Cannot join the Ray cluster at {address} ({one_line(str(error))}); is `ray start` running there?") from None
    try:
        actors = _start_actors(job, workers, len(cases), note)
        yield from _dispatch(cases, actors, should_cancel)
    finally:
        ray.shutdown()  # on an embedded Ray this also stops it; on a cluster it disconnects


def _start_actors(job: CohortJob, workers: int | None, cases: int, note) -> list:
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    if job.device == "cuda" and gpus == 0:
        raise LDSegError("--device cuda was given but the Ray cluster has no GPU; use --device auto or cpu.")
    on_gpu = gpus > 0 and job.device in ("auto", "cuda")
    per_worker = job.threads or 1
    available = gpus if on_gpu else cpus // per_worker
    slots = f"{gpus} GPU(s), one per worker" if on_gpu else f"{cpus} CPU(s), {per_worker} per worker"
    if available < 1:
        raise LDSegError(f"The Ray cluster has {slots}: no room for one worker; lower --cpus-per-worker.")
    if workers and workers > available:
        raise LDSegError(
            f"The Ray cluster has {slots}: room for {available} workers, not {workers}; use --workers {available} or fewer."
        )
    count = min(workers or available, cases)
    note(f"Ray: {count} workers on {slots}")
    options = {"num_cpus": per_worker, "num_gpus": 1 if on_gpu else 0}
    return [CohortWorker.options(**options).remote(job) for _ in range(count)]


def _dispatch(cases: list[Case], actors: list, should_cancel) -> Iterator[tuple]:
    pending = deque(cases)
    attempts = {case.case_id: 0 for case in cases}
    waiting: dict = {actor.where.remote(): ("ready", actor, None) for actor in actors}  # future -> (kind, actor, case)
    free: list[tuple] = []  # (actor, where)
    while pending or any(kind == "case" for kind, _, _ in waiting.values()):
        while free and pending:
            (actor, where), case = free.pop(), pending.popleft()
            attempts[case.case_id] += 1
            waiting[actor.run.remote(case)] = ("case", actor, (case, where))
            yield "started", case, where
        if not waiting:  # every worker is gone for good
            for case in pending:
                yield "finished", failed_row(case, "every Ray worker died; see the Ray logs (/tmp/ray/session_latest/logs)")
            return
        done, _ = ray.wait(list(waiting), num_returns=1, timeout=WAIT_SECONDS)
        if should_cancel():
            raise CancelledError()
        if not done:
            continue
        kind, actor, context = waiting.pop(done[0])
        try:
            value = ray.get(done[0])
        except RayActorError as error:
            if kind == "case":
                case, where = context
                reason = f"worker {where} died ({type(error).__name__})"
                if attempts[case.case_id] < MAX_ATTEMPTS:
                    pending.appendleft(case)
                    yield "retry", case, reason
                else:
                    yield "finished", failed_row(case, f"{reason}, {MAX_ATTEMPTS} times on this case (out of memory?)")
            if kind == "case" or isinstance(error, ActorUnavailableError):  # answers once Ray has restarted it
                waiting[actor.where.remote()] = ("ready", actor, None)
            continue  # a worker that Ray gave up on (ActorDiedError) is dropped
        if kind == "ready":
            free.append((actor, value))
        else:
            free.append((actor, context[1]))
            yield "finished", value
