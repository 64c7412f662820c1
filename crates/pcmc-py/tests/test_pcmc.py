"""Tests of pcmc's Python entry: jobs, log-likelihoods and simulations.

The job files are the repository's (`jobs/`); the command line's binary,
when `PCMC_BIN` names it, is the reference for messages and estimates.
"""

import math
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pcmc

ROOT = Path(__file__).resolve().parents[3]
JOBS = ROOT / "jobs"
PCMC_BIN = os.environ.get("PCMC_BIN")


def job(name):
    return pcmc.Job.from_toml(JOBS / name)


def test_a_job_loads_with_its_parameters_and_species():
    j = job("lv11-quick.toml")
    assert j.name == "lv11-quick"
    assert j.parameters == ["birth", "predation1", "death1"]
    assert j.species == ["prey", "pred1"]
    assert j.truth == [1.0, 0.005, 0.6]
    j.check()
    # Every parameter kind: rates, a noise parameter, an initial count.
    s = job("sir-incidence-quick.toml")
    assert s.parameters == ["beta", "gamma", "k", "I0"]
    assert s.species == ["S", "I", "R", "incidence_cases"]
    # An SBML model.
    v = job("vilar2002-quick.toml")
    assert v.parameters == ["Reaction4.deltaR", "Reaction16.betaR"]


@pytest.mark.skipif(not PCMC_BIN, reason="PCMC_BIN names the pcmc binary")
def test_a_bad_job_raises_the_command_line_message(tmp_path):
    text = (JOBS / "lv11-quick.toml").read_text().replace(
        "particles = 100", "particles = 0"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("../data/", f"{ROOT}/data/"))
    with pytest.raises(ValueError) as e:
        pcmc.Job.from_toml(bad)
    cli = subprocess.run([PCMC_BIN, "check", str(bad)], capture_output=True, text=True)
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"error: {e.value}"


def test_missing_files_and_bad_data_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read the job file"):
        pcmc.Job.from_toml(tmp_path / "none.toml")
    text = (JOBS / "lv11-quick.toml").read_text()
    data = tmp_path / "d.csv"
    data.write_text("time,prey,pred1\n0,50,NA\n1,x,3\n")
    j = tmp_path / "j.toml"
    j.write_text(text.replace("../data/lv11.csv", str(data)))
    bad = pcmc.Job.from_toml(j)
    with pytest.raises(ValueError, match="line 3"):
        bad.check()


@pytest.mark.skipif(not PCMC_BIN, reason="PCMC_BIN names the pcmc binary")
def test_loglik_is_the_command_lines_estimate_bit_for_bit(tmp_path):
    out = tmp_path / "run"
    subprocess.run(
        [PCMC_BIN, "run", str(JOBS / "lv11-quick.toml"), "--out", str(out),
         "--quiet", "--chains", "1"],
        check=True,
    )
    j = job("lv11-quick.toml")
    rows = [l.split(",") for l in (out / "chain.csv").read_text().splitlines()[1:]]
    accepted = [r for r in rows if r[3] == "1"]
    assert len(accepted) >= 3
    for r in accepted[:5]:
        theta = [float(x) for x in r[4:]]
        # An accepted proposal's pass ran to the end: its estimate is the
        # one of chain 0, that iteration.
        est = pcmc.loglik(j, theta, seed=2018, iteration=int(r[1]))
        assert est == float(r[2])


def test_loglik_does_not_depend_on_threads_and_batch_rows_are_iterations():
    j = job("lv11-quick.toml")
    one = pcmc.loglik(j, j.truth, seed=5, threads=1)
    assert one == pcmc.loglik(j, j.truth, seed=5, threads=2)
    assert one == pcmc.loglik(j, np.array(j.truth), seed=5, threads=3)
    thetas = np.array([j.truth, [0.9, 0.005, 0.6], j.truth])
    b = pcmc.loglik_batch(j, thetas, seed=5, threads=2)
    assert b.shape == (3,) and b.dtype == np.float64
    assert b[0] == one
    assert b[1] == pcmc.loglik(j, thetas[1], seed=5, iteration=1)
    assert b[2] == pcmc.loglik(j, j.truth, seed=5, iteration=2)
    assert np.array_equal(b, pcmc.loglik_batch(j, thetas, seed=5, threads=1))
    # Another seed, another estimate; more particles, a finite one.
    assert pcmc.loglik(j, j.truth, seed=6) != one
    assert math.isfinite(pcmc.loglik(j, j.truth, particles=500, seed=5))
    # A θ outside the model has likelihood zero.
    assert pcmc.loglik(j, [-1.0, 0.005, 0.6]) == -math.inf


def test_simulate_follows_the_exact_law_of_immigration_death():
    # X(0) ~ Poisson(15), λ = 5, μ = 0.5: X(t) ~ Poisson(10 + 5 e^{-t/2}).
    j = job("imdeath-smc2.toml")
    assert j.truth == [5.0, 0.5]
    n = 4000
    x = pcmc.simulate(j, np.tile(j.truth, (n, 1)), [1.0, 4.0], seed=3, threads=2)
    assert x.shape == (n, 2, 1) and x.dtype == np.uint64
    for k, t in enumerate([1.0, 4.0]):
        m = 10 + 5 * math.exp(-t / 2)
        mean = x[:, k, 0].mean()
        # Poisson: sd = √m; the mean within 4 standard errors.
        assert abs(mean - m) < 4 * math.sqrt(m / n), (t, mean, m)
        var = x[:, k, 0].var(ddof=1)
        # The variance within 4 of its standard errors (√(2/n)·m for a
        # Poisson law of this size, kurtosis included).
        assert abs(var - m) < 4 * m * math.sqrt(2 / n + 1 / (m * n)), (t, var, m)


def test_simulate_is_deterministic_across_threads_and_seeds_differ():
    j = job("sir-incidence-quick.toml")
    thetas = np.tile(j.truth, (16, 1))
    times = np.arange(1.0, 11.0).tolist()
    a = pcmc.simulate(j, thetas, times, seed=1, threads=1)
    b = pcmc.simulate(j, thetas, times, seed=1, threads=2)
    assert a.shape == (16, 10, 4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pcmc.simulate(j, thetas, times, seed=2))
    # S + I + R stays the school's 503 pupils (I0 = 3 from θ).
    assert np.all(a[:, :, :3].sum(axis=2) == 503)
    # The second school (set 1) has 302.
    c = pcmc.simulate(j, thetas, times, set=1)
    assert np.all(c[:, :, :3].sum(axis=2) == 302)


def test_bad_arguments_raise_errors_naming_them():
    j = job("lv11-quick.toml")
    im = job("imdeath-smc2.toml")  # its initial time is 0
    cases = [
        (lambda: pcmc.loglik(j, [1.0, 2.0]), ValueError, "theta: 2 values for 3"),
        (lambda: pcmc.loglik(j, [1.0, float("nan"), 0.6]), ValueError, "theta: predation1 = NaN"),
        (lambda: pcmc.loglik(j, j.truth, particles=0), ValueError, "particles"),
        (lambda: pcmc.loglik(j, j.truth, threads=0), ValueError, "threads"),
        (lambda: pcmc.loglik_batch(j, np.ones((2, 4))), ValueError, r"thetas\[0\]: 4 values"),
        (lambda: pcmc.loglik_batch(j, np.ones(3)), TypeError, None),
        (lambda: pcmc.simulate(j, np.ones((1, 3)), []), ValueError, "times: give at least one"),
        (lambda: pcmc.simulate(j, np.ones((1, 3)), [2.0, 1.0]), ValueError, r"times\[1\]"),
        (lambda: pcmc.simulate(im, np.ones((1, 2)), [-1.0]), ValueError, "before the initial time"),
        (lambda: pcmc.simulate(j, np.ones((1, 3)), [1.0], set=3), ValueError, "set: 3"),
        (lambda: pcmc.simulate(j, np.ones((1, 3)), [float("inf")]), ValueError, "times"),
        (lambda: pcmc.loglik(j, "abc"), TypeError, None),
    ]
    for call, kind, needle in cases:
        with pytest.raises(kind, match=needle):
            call()


def test_the_gil_is_released_while_rust_computes():
    j = job("lv11-quick.toml")
    thetas = np.tile(j.truth, (200, 1))
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    pcmc.loglik_batch(j, thetas, particles=200, threads=1)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    # With the GIL held the other thread could not tick at all.
    assert end - start > 0.05
    assert len(during) >= 5, (len(during), end - start)


@pytest.mark.skipif(not PCMC_BIN, reason="PCMC_BIN names the pcmc binary")
def test_sample_is_pcmc_run_bit_for_bit_and_arviz_agrees_with_its_summary(tmp_path):
    import arviz as az
    import json

    out = tmp_path / "run"
    subprocess.run(
        [PCMC_BIN, "run", str(JOBS / "lv11-quick.toml"), "--out", str(out),
         "--quiet", "--iterations", "60", "--threads", "2"],
        check=True,
    )
    j = job("lv11-quick.toml")
    d = pcmc.sample_pmmh(j, iterations=60, threads=1)
    rows = [l.split(",") for l in (out / "chain.csv").read_text().splitlines()[1:]]
    assert len(rows) == len(d.chain) == 2 * 60
    for r, c, i, ll, acc, th in zip(rows, d.chain, d.iteration, d.loglik, d.accepted, d.theta):
        assert (int(r[0]), int(r[1]), float(r[2]), r[3] == "1") == (c, i, ll, acc)
        assert [float(x) for x in r[4:]] == list(th)
    # The ArviZ object: sample's and read_run's are the same draws.
    idata = pcmc.sample(j, iterations=60)
    run = pcmc.read_run(out)
    for n in j.parameters:
        assert idata.posterior[n].shape == (2, 60)
        assert np.array_equal(idata.posterior[n].values, run.posterior[n].values)
    assert np.array_equal(idata.sample_stats["loglik"].values, run.sample_stats["loglik"].values)
    # ArviZ's R-hat and ESS are pcmc's summary.json's.
    s = json.loads((out / "summary.json").read_text())["parameters"]
    rhat, bulk, tail = az.rhat(run), az.ess(run, method="bulk"), az.ess(run, method="tail")
    for n in j.parameters:
        assert abs(float(rhat[n]) - s[n]["rhat"]) < 1e-10
        assert abs(float(bulk[n]) - s[n]["ess"]) < 1e-10
        if s[n]["ess_tail"] is not None:
            assert abs(float(tail[n]) - s[n]["ess_tail"]) < 1e-10


def test_sample_refuses_bad_arguments_and_unknown_methods(tmp_path):
    j = job("lv11-quick.toml")
    with pytest.raises(ValueError, match="method"):
        pcmc.sample(j, method="nuts")
    with pytest.raises(ValueError, match="chains: 0"):
        pcmc.sample(j, chains=0)
    with pytest.raises(ValueError, match="iterations"):
        pcmc.sample(j, iterations=0)
    with pytest.raises(ValueError, match="not a run directory"):
        pcmc.read_run(tmp_path)


def test_ctrl_c_stops_a_sample_within_seconds():
    import signal
    import sys

    code = (
        "import sys, pcmc\n"
        f"j = pcmc.Job.from_toml({str(JOBS / 'lv11-quick.toml')!r})\n"
        "print('started', flush=True)\n"
        "try:\n"
        "    pcmc.sample(j, iterations=10**7, threads=1)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(3)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    def cpu_seconds():
        fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        assert p.stdout.readline().strip() == "started"
        # Inside the sampler: a second of CPU after the start (polled,
        # bounded).
        deadline = time.perf_counter() + 30
        while cpu_seconds() < 1.0:
            assert time.perf_counter() < deadline, "the sampler did not start"
            time.sleep(0.02)
        sent = time.perf_counter()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
        took = time.perf_counter() - sent
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 3, rc
    assert "interrupted" in p.stdout.read()
    assert took < 5.0, took


def test_observed_data_holds_the_jobs_data_with_gaps():
    j = job("sir-incidence-quick.toml")
    o = j.observed()
    assert set(o) == {"time", "cases", "set"}
    assert len(o["time"]) == len(o["cases"]) == 80
    # Days 9 and 17 of school A are missing; school B's rows come second.
    assert np.isnan(o["cases"][8]) and np.isnan(o["cases"][16])
    assert list(o["set"][:40]) == [0] * 40 and list(o["set"][40:]) == [1] * 40
    idata = pcmc.sample(j, iterations=3, chains=1, threads=1)
    assert idata.observed_data["cases"].dims == ("row",)
    assert np.array_equal(
        idata.observed_data["time"].values, o["time"]
    )
