"""Protocol tasks in worker processes (``orster4d-reproduce --jobs N``).

At the sizes of the reproduction a training step is launch-bound: the GPU idles while the host
issues kernels, so several runs at once on one GPU should finish sooner than one after another. After the
shared models (world, image VAE, CLIP), :func:`run_tasks` starts up to ``jobs`` worker processes,
each running one :meth:`~orster4d.reproduce.protocol.Protocol.tasks` entry (a teacher, or one row
and seed: its chain, scores and assets) and exiting. Workers share the run cache: a run two tasks
need (stage 1 of a seed, the teachers) is made by whichever takes its lock first and reused by the
other (:meth:`~orster4d.reproduce.cache.Run.locked`). Each worker writes its output to
``<root>/logs/<task>.log``. The parent then runs the protocol in-process, finds every run cached
and writes the tables.

Worker command (internal)::

    python -m orster4d.reproduce.workers OPTIONS.json TASK.json RESULT.json
"""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence


def task_name(task: Sequence) -> str:
    """A file-name-safe name of a task: ``teacher_spatial``, ``ours_seed0``, ..."""
    if task[0] == "teacher":
        return f"teacher_{task[1]}"
    return re.sub(r"[^a-z0-9]+", "_", str(task[0]).lower()).strip("_") + f"_seed{task[1]}"


def run_tasks(opts, tasks: List[tuple], log_dir: Path, progress: bool = True, poll_s: float = 0.5,
              deadline: Optional[float] = None, groups: Optional[Sequence] = None) -> List[dict]:
    """Run ``tasks`` in up to ``opts.jobs`` worker processes; returns one record per task
    ``{"task", "wall_s", "events", "log", "returncode"}`` in task order. Every task is tried, except
    that none starts once ``time.perf_counter()`` has passed ``deadline`` (``--start-by``; the
    record of such a task is ``{"task", "started": False}``) while the running ones finish; a failed
    task is a RuntimeError after the others finish, naming it and its log.

    ``groups`` (one hashable or None per task): a task is not started while another task of its
    group (not None) runs; the next task in order that may start takes the free worker instead, and
    the held one starts once its group is idle (it then finds the shared runs made)."""
    groups = list(groups) if groups is not None else [None] * len(tasks)
    if len(groups) != len(tasks):
        raise ValueError(f"run_tasks: {len(groups)} groups for {len(tasks)} tasks")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    wopts = dataclasses.replace(opts, jobs=1, progress=False)
    opts_file = log_dir / "worker_options.json"
    opts_file.write_text(json.dumps(dataclasses.asdict(wopts)))
    pending = list(enumerate(tasks))
    running, records = {}, [None] * len(tasks)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=f"tasks ({opts.jobs} at once)", dynamic_ncols=True)
    try:
        while pending or running:
            if pending and deadline is not None and time.perf_counter() >= deadline:
                for i, task in pending:  # past --start-by: what has not started is left for a later call
                    records[i] = {"task": list(task), "started": False}
                    if bar is not None:
                        bar.update(1)
                pending = []
            while pending and len(running) < opts.jobs:
                busy = {groups[j] for j in running} - {None}
                free = [k for k, (j, _) in enumerate(pending) if groups[j] is None or groups[j] not in busy]
                if not free:
                    break  # every pending task waits on a running one of its group
                i, task = pending.pop(free[0])
                name = task_name(task)
                task_file, result_file = log_dir / f"{name}.task.json", log_dir / f"{name}.result.json"
                task_file.write_text(json.dumps(list(task)))
                result_file.unlink(missing_ok=True)
                log = open(log_dir / f"{name}.log", "w")
                cmd = [sys.executable, "-m", "orster4d.reproduce.workers", str(opts_file), str(task_file),
                       str(result_file)]
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                running[i] = (proc, log, result_file, time.perf_counter())
            time.sleep(poll_s)
            for i in [i for i, r in running.items() if r[0].poll() is not None]:
                proc, log, result_file, t0 = running.pop(i)
                log.close()
                rec = {"task": list(tasks[i]), "wall_s": time.perf_counter() - t0, "log": log.name,
                       "returncode": proc.returncode, "events": []}
                if proc.returncode == 0 and result_file.is_file():
                    rec["events"] = json.loads(result_file.read_text())["events"]
                records[i] = rec
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(last=task_name(tasks[i]), ok=proc.returncode == 0)
    finally:
        for proc, log, _, _ in running.values():  # interrupted: stop the workers (their runs resume later)
            proc.terminate()
            proc.wait()
            log.close()
        if bar is not None:
            bar.close()
    failed = [r for r in records if r.get("started", True) and r["returncode"] != 0]
    if failed:
        raise RuntimeError("protocol tasks failed: " + "; ".join(
            f"{task_name(r['task'])} (status {r['returncode']}, log {r['log']})" for r in failed))
    return records


def main(argv=None) -> int:
    from orster4d.reproduce.protocol import Protocol, ProtocolOptions

    opts_file, task_file, result_file = (argv if argv is not None else sys.argv[1:])
    opts = ProtocolOptions(**json.loads(Path(opts_file).read_text()))
    task = tuple(json.loads(Path(task_file).read_text()))
    proto = Protocol(opts)
    proto.world(build=False)  # the parent built it
    proto.vae()
    proto.clip()
    t0 = time.perf_counter()
    proto.run_task(task)
    Path(result_file).write_text(json.dumps({"events": proto.events, "wall_s": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
