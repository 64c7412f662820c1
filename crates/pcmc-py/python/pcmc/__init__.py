"""pcmc: particle MCMC for stochastic kinetic models, from Python.

Load a job file (the same TOML as the ``pcmc`` command line), estimate
log-likelihoods with pcmc's exact particle filter, and simulate the model:

>>> import pcmc
>>> job = pcmc.Job.from_toml("jobs/lv11-quick.toml")
>>> pcmc.loglik(job, job.truth, seed=1)            # doctest: +SKIP
>>> pcmc.simulate(job, [job.truth] * 100, [1, 2, 3]).shape   # doctest: +SKIP
(100, 3, 2)

The computations release the GIL; results are bit for bit those of the
command line for the same job and seed, whatever the thread count.
"""

from ._pcmc import Job, __version__, loglik, loglik_batch, simulate

__all__ = ["Job", "loglik", "loglik_batch", "simulate", "__version__"]
