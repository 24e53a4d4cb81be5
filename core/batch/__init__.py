"""Batch work: one pipeline over many files, on local worker processes or a Ray cluster.

    plan = plan_batch(pipeline, ["scans/"], BatchOptions(out_dir=Path("out"), workers=2))
    result = run_batch(plan, opts, on_result=print)   # report.json (+ results.jsonl) in out/

`runner` plans outputs, resumes and reports; `engines` runs jobs (local pool, Ray); `worker` is what
runs inside a worker process. Library code: no printing (the CLI shows progress via ``on_result``).
"""

from facet3d.core.batch.engines import Job, LocalEngine, RayEngine, usable_cores
from facet3d.core.batch.runner import (JOURNAL, REPORT, RESULTS, BatchOptions, BatchPlan, BatchResult, expand_patterns,
                                       plan_batch, run_batch)

__all__ = ["BatchOptions", "BatchPlan", "BatchResult", "Job", "LocalEngine", "RayEngine", "plan_batch", "run_batch",
           "expand_patterns", "usable_cores", "REPORT", "RESULTS", "JOURNAL"]
