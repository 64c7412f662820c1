"""Draws to ArviZ: one converter for `pcmc.sample` and `pcmc.read_run`.

ArviZ 0.x returns an `InferenceData`, ArviZ ≥ 1 an `xarray.DataTree`; the
groups and variables are the same: `posterior` and `sample_stats` with
dimensions (chain, draw), `observed_data` when the job's data are given.
"""

import numpy as np


def _by_chain(chain, values):
    """Values of each chain in row order, stacked: shape (chains, draws, ...)."""
    ids = np.unique(chain)
    parts = [values[chain == c] for c in ids]
    n = min(len(p) for p in parts)
    return ids, np.stack([p[:n] for p in parts])


def to_arviz(names, chain, theta, stats, observed=None, attrs=None):
    """Builds the ArviZ object of kept PMMH rows (`chain`: each row's chain,
    `theta`: [N, d], `stats`: name → [N] arrays)."""
    import arviz as az

    chain = np.asarray(chain)
    ids, th = _by_chain(chain, np.asarray(theta))
    posterior = {n: th[:, :, i] for i, n in enumerate(names)}
    sample_stats = {k: _by_chain(chain, np.asarray(v))[1] for k, v in stats.items()}
    coords = {"chain": ids.astype(np.int64)}
    groups = {"posterior": posterior, "sample_stats": sample_stats}
    # The data rows share one dimension, `row` (times may repeat across
    # data sets); `time` is a variable along it.
    dims = {k: ["row"] for k in (observed or {})}
    if observed is not None:
        groups["observed_data"] = observed
    attrs = dict(attrs or {})
    major = int(az.__version__.split(".")[0])
    if major >= 1:
        tree = az.from_dict(groups, coords=coords, dims=dims)
        for k, v in attrs.items():
            tree.attrs[k] = v
        return tree
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=sample_stats,
        observed_data=observed,
        coords=coords,
        dims=dims,
        attrs=attrs,
    )
    return idata
