"""A notebook-style tour of pcmc from Python (run by CI: scripts/test.sh).

Run from the repository root after `pip install ./crates/pcmc-py`:

    python examples/python/first_model.py
"""

import math
from pathlib import Path

import arviz as az
import numpy as np

import pcmc

ROOT = Path(__file__).resolve().parents[2]

# 1. A job: the same TOML file as `pcmc run` (Lotka–Volterra, one predator).
job = pcmc.Job.from_toml(ROOT / "jobs" / "lv11-quick.toml")
job.check()
print(job)

# 2. Simulate 200 trajectories at the true θ (counts [B, T, S], no copy).
times = [2.0, 4.0, 8.0]
x = pcmc.simulate(job, np.tile(job.truth, (200, 1)), times, seed=1)
print("mean prey, predators at", times, ":", x.mean(axis=0).round(1).tolist())

# 3. Log-likelihood estimates: at the truth and at a worse θ, several
#    independent estimates each (iteration = the stream).
for theta in (job.truth, [1.2, 0.005, 0.6]):
    est = [pcmc.loglik(job, theta, seed=7, iteration=i) for i in range(5)]
    print("loglik at", theta, ":", np.round(est, 2).tolist())
    assert all(math.isfinite(e) for e in est)

# 4. PMMH, as `pcmc run` runs it, into ArviZ: immigration–death (X → X+1
#    at λ, X → ∅ at μ·X) from its simulated data (true λ = 5, μ = 0.5).
imdeath = pcmc.Job.from_toml(ROOT / "jobs" / "imdeath-smc2.toml")
idata = pcmc.sample(imdeath, chains=2, iterations=1000, seed=3, threads=2)
summary = az.summary(idata, var_names=imdeath.parameters, hdi_prob=0.95)
print(summary[["mean", "sd", "hdi_2.5%", "hdi_97.5%", "ess_bulk", "r_hat"]])
assert (summary["r_hat"] < 1.05).all(), summary
for name, true in zip(imdeath.parameters, imdeath.truth):
    lo, hi = summary.loc[name, "hdi_2.5%"], summary.loc[name, "hdi_97.5%"]
    assert lo < true < hi, (name, lo, true, hi)
print("acceptance:", float(idata.sample_stats["accepted"].mean()))
