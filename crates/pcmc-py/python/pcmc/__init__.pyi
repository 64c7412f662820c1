from os import PathLike
from typing import Any, Literal

from ._pcmc import Draws as Draws
from ._pcmc import Job as Job
from ._pcmc import __version__ as __version__
from ._pcmc import loglik as loglik
from ._pcmc import loglik_batch as loglik_batch
from ._pcmc import sample_pmmh as sample_pmmh
from ._pcmc import simulate as simulate

def sample(
    job: Job,
    method: Literal["pmmh"] = "pmmh",
    *,
    seed: int | None = None,
    threads: int | None = None,
    chains: int | None = None,
    iterations: int | None = None,
    particles: int | None = None,
) -> Any:
    """PMMH into an ArviZ object (InferenceData, or DataTree with ArviZ ≥ 1)."""

def read_run(path: str | PathLike[str]) -> Any:
    """A `pcmc run` directory as the same ArviZ object as `sample`."""
