from os import PathLike
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

__version__: str

class Job:
    """A pcmc job: the model, its data, priors and settings."""

    @staticmethod
    def from_toml(path: str | PathLike[str]) -> Job:
        """Loads and checks a job file; ValueError with pcmc check's message."""
    @staticmethod
    def from_run(path: str | PathLike[str]) -> Job:
        """The job of a `pcmc run` directory, with its kept input copies."""
    def observed(self) -> dict[str, npt.NDArray[Any]]:
        """The data: time, one array per column (NaN: missing), set."""
    def check(self) -> None:
        """Reads the job's data and checks them against the model."""
    @property
    def name(self) -> str: ...
    @property
    def parameters(self) -> list[str]:
        """θ's names: rate parameters, noise parameters, initial counts."""
    @property
    def species(self) -> list[str]: ...
    @property
    def truth(self) -> list[float] | None: ...
    @property
    def particles(self) -> int: ...

def loglik(
    job: Job,
    theta: Sequence[float] | npt.ArrayLike,
    *,
    particles: int | None = None,
    seed: int = 0,
    iteration: int = 0,
    threads: int | None = None,
) -> float:
    """One particle-filter log-likelihood estimate at theta."""

def loglik_batch(
    job: Job,
    thetas: npt.ArrayLike,
    *,
    particles: int | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> npt.NDArray[np.float64]:
    """Estimates at each row of thetas [B, d]; row b is loglik(..., iteration=b)."""

def simulate(
    job: Job,
    thetas: npt.ArrayLike,
    times: Sequence[float],
    *,
    seed: int = 0,
    set: int = 0,
    threads: int | None = None,
) -> npt.NDArray[np.uint64]:
    """States at times for each row of thetas: shape [B, len(times), S]."""

class Draws:
    """The kept rows of a PMMH run, in `chain.csv`'s order."""

    chain: npt.NDArray[np.uint64]
    iteration: npt.NDArray[np.uint64]
    loglik: npt.NDArray[np.float64]
    accepted: npt.NDArray[np.bool_]
    particles: npt.NDArray[np.uint64]
    theta: npt.NDArray[np.float64]
    names: list[str]
    burn_in: int
    iterations: int
    thin: int

def sample_pmmh(
    job: Job,
    *,
    seed: int | None = None,
    chains: int | None = None,
    iterations: int | None = None,
    particles: int | None = None,
    threads: int | None = None,
    first_chain: int = 0,
) -> Draws:
    """PMMH as `pcmc run` runs it; the kept rows."""
