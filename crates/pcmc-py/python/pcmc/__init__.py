"""pcmc: particle MCMC for stochastic kinetic models, from Python.

Load a job file (the same TOML as the ``pcmc`` command line), estimate
log-likelihoods with pcmc's exact particle filter, simulate the model, and
run PMMH into an ArviZ object:

>>> import pcmc
>>> job = pcmc.Job.from_toml("jobs/lv11-quick.toml")
>>> pcmc.loglik(job, job.truth, seed=1)            # doctest: +SKIP
>>> pcmc.simulate(job, [job.truth] * 100, [1, 2, 3]).shape   # doctest: +SKIP
(100, 3, 2)
>>> idata = pcmc.sample(job, chains=2)             # doctest: +SKIP

The computations release the GIL; results are bit for bit those of the
command line for the same job and seed, whatever the thread count.
"""

import json
from pathlib import Path

import numpy as np

from ._pcmc import Draws, Job, __version__, loglik, loglik_batch, sample_pmmh, simulate

__all__ = [
    "Job",
    "loglik",
    "loglik_batch",
    "simulate",
    "sample",
    "read_run",
    "__version__",
]


def sample(
    job,
    method="pmmh",
    *,
    seed=None,
    threads=None,
    chains=None,
    iterations=None,
    particles=None,
):
    """Runs PMMH on `job` and returns an ArviZ object (an `InferenceData`
    with ArviZ 0.x, an `xarray.DataTree` with ArviZ ≥ 1): groups
    `posterior` (chain, draw), `sample_stats` (`loglik`, the log-likelihood
    estimate; `accepted`; `particles`) and `observed_data`.

    The draws are those of `pcmc run` with the same seed, chains,
    iterations and particles, bit for bit (`None` keeps the job's values;
    `iterations` counts the kept iterations after burn-in). The GIL is
    released while Rust computes; Ctrl-C stops the run within one iteration
    and raises `KeyboardInterrupt`. Only `method="pmmh"` so far.
    """
    if method != "pmmh":
        raise ValueError(f"method: {method!r} is not available from Python yet (pmmh)")
    d = sample_pmmh(
        job,
        seed=seed,
        chains=chains,
        iterations=iterations,
        particles=particles,
        threads=threads,
    )
    return _from_rows(
        d.names,
        np.asarray(d.chain),
        np.asarray(d.theta),
        {
            "loglik": np.asarray(d.loglik),
            "accepted": np.asarray(d.accepted),
            "particles": np.asarray(d.particles),
        },
        {"job": job.name, "burn_in": d.burn_in, "thin": d.thin, "method": "pmmh"},
        observed=_observed(job),
    )


def _observed(job):
    """The job's data columns for ArviZ's `observed_data` (with `time`)."""
    data = job.observed()
    return {k: np.asarray(v) for k, v in data.items() if k != "set"}


def _from_rows(names, chain, theta, stats, attrs, observed=None):
    from ._arviz import to_arviz

    return to_arviz(names, chain, theta, stats, observed=observed, attrs=attrs)


def read_run(path):
    """Loads a `pcmc run` (PMMH) directory into the same ArviZ object as
    `sample`: its `chain.csv` (or `chain.parquet`) and `run.json`."""
    path = Path(path)
    chain_csv = path / "chain.csv"
    if not chain_csv.is_file():
        raise ValueError(f"{path}: not a run directory of pcmc run (no chain.csv)")
    run = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    lines = chain_csv.read_text().splitlines()
    head = lines[0].split(",")
    if head[:4] != ["chain", "iteration", "loglik", "accepted"]:
        raise ValueError(f"{chain_csv}: line 1: not a pcmc chain header")
    rows = [l.split(",") for l in lines[1:] if len(l.split(",")) == len(head)]
    chain = np.array([int(r[0]) for r in rows], dtype=np.uint64)
    theta = np.array([[float(x) for x in r[4:]] for r in rows], dtype=np.float64).reshape(
        len(rows), len(head) - 4
    )
    stats = {
        "loglik": np.array([float(r[2]) for r in rows]),
        "accepted": np.array([r[3] == "1" for r in rows]),
    }
    attrs = {
        "job": run.get("job", ""),
        "burn_in": run.get("burn_in", 0),
        "thin": run.get("thin", 1),
        "method": "pmmh",
    }
    observed = None
    job_toml = path / "job.toml"
    if job_toml.is_file():
        try:
            observed = _observed(Job.from_run(path))
        except ValueError:
            observed = None
    return _from_rows(head[4:], chain, theta, stats, attrs, observed=observed)
