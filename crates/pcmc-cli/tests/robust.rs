//! A posterior users can trust on data the shipped settings were not tuned
//! for: lv11 simulated with a smaller observation noise (sd 5, where 100
//! particles give sd(log-likelihood) ≈ 1.6 at the truth and hundreds far
//! from it). With a fixed 100 particles and no burn-in checks, the dispersed
//! chain sticks on a lucky overestimate (the failure is real: R̂ flags it);
//! with `particles = "auto"` and the default checks both chains reach the
//! posterior and agree.
mod common;
use common::{job, ok, pcmc};
use std::path::{Path, PathBuf};

/// lv11 with observation sd 5 and 400 burn-in (5000 kept iterations), data
/// simulated into `dir`; `filter` and `mcmc` replace the particle line and
/// extend the `[mcmc]` table.
fn write_job(dir: &Path, name: &str, filter: &str, mcmc: &str) -> PathBuf {
    let data = dir.join("sd5.csv");
    let text = std::fs::read_to_string(job("lv11.toml"))
        .unwrap()
        .replace("../data/lv11.csv", &data.display().to_string())
        .replace("sd = 10.0", "sd = 5.0")
        .replace("burn_in = 1000", "burn_in = 400");
    // The shipped job adapts its particle count: replace that setting.
    let start = text.find("particles = ").expect("a particle setting");
    let end = text[start..]
        .find("\nresampling")
        .map(|e| start + e)
        .expect("resampling after the particle setting");
    let text = format!("{}{filter}{}", &text[..start], &text[end..])
        .replace("adapt = true\n", &format!("adapt = true\n{mcmc}\n"));
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    if !data.exists() {
        ok(&pcmc()
            .arg("simulate")
            .arg(&p)
            .arg("--out")
            .arg(&data)
            .output()
            .unwrap());
    }
    p
}

fn run(job: &Path, out: &Path) -> serde_json::Value {
    ok(&pcmc()
        .args(["run", "--quiet", "--seed", "17", "--threads", "2"])
        .arg(job)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap());
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// Per chain, per parameter: the kept draws.
fn draws(dir: &Path) -> Vec<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(dir.join("chain.csv")).unwrap();
    let mut per: Vec<Vec<Vec<f64>>> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let c = f[0] as usize;
        if per.len() <= c {
            per.resize(c + 1, vec![Vec::new(); f.len() - 4]);
        }
        for (p, x) in f[4..].iter().enumerate() {
            per[c][p].push(*x);
        }
    }
    per
}

#[test]
fn a_dispersed_chain_stuck_with_100_particles_reaches_the_posterior_with_auto() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["birth", "predation1", "death1"];

    // Fixed 100 particles, no checks: a chain sticks and R̂ says so.
    let off = write_job(
        tmp.path(),
        "off",
        "particles = 100",
        "stuck_check = false\nrelocate = false",
    );
    let s = run(&off, &tmp.path().join("off"));
    let rhat_max = names
        .iter()
        .map(|n| s["parameters"][n]["rhat"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        rhat_max > 1.1,
        "the failure is not real: R-hat {rhat_max}\n{s}"
    );
    let acc: Vec<f64> = serde_json::from_value(s["acceptance_per_chain"].clone()).unwrap();
    assert!(acc.iter().any(|a| *a < 0.01), "no chain stuck: {acc:?}");
    assert!(
        s["warnings"].to_string().contains("R-hat"),
        "{}",
        s["warnings"]
    );

    // "auto" with the default checks.
    let auto = write_job(
        tmp.path(),
        "auto",
        "particles = \"auto\"\nauto = { min = 50, max = 1000 }",
        "",
    );
    let dir = tmp.path().join("auto");
    let s = run(&auto, &dir);
    assert_eq!(s["particles"], "auto");
    for n in names {
        let p = &s["parameters"][n];
        let (rhat, ess) = (p["rhat"].as_f64().unwrap(), p["ess"].as_f64().unwrap());
        assert!(rhat <= 1.01, "{n}: R-hat {rhat}\n{s}");
        assert!(ess >= 200.0, "{n}: bulk ESS {ess} < 100 per chain\n{s}");
    }
    // Each chain ends burn-in with its own count, where sd(log-likelihood)
    // is near its target (the kept count was measured at the end of burn-in).
    for (c, sd) in s["loglik_sd_per_chain"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let sd = sd.as_f64().unwrap();
        let n = s["particles_per_chain"][c].as_u64().unwrap();
        assert!(
            (0.4..=2.0).contains(&sd),
            "chain {c}: sd {sd} at {n} particles"
        );
        assert!((50..=1000).contains(&n), "chain {c}: {n} particles");
    }
    // Every chain's mean is within Monte Carlo error of the other's: four
    // standard errors of the difference, each chain's from its share of
    // the bulk ESS.
    let per = draws(&dir);
    assert_eq!(per.len(), 2);
    for (p, n) in names.iter().enumerate() {
        let ess_chain = s["parameters"][n]["ess"].as_f64().unwrap() / 2.0;
        let stats: Vec<(f64, f64)> = per
            .iter()
            .map(|chain| {
                let x = &chain[p];
                let m = x.iter().sum::<f64>() / x.len() as f64;
                let v = x.iter().map(|y| (y - m) * (y - m)).sum::<f64>() / (x.len() - 1) as f64;
                (m, v / ess_chain)
            })
            .collect();
        let diff = (stats[0].0 - stats[1].0).abs();
        let se = (stats[0].1 + stats[1].1).sqrt();
        assert!(
            diff <= 4.0 * se,
            "{n}: chain means {} and {} differ by {:.1} standard errors",
            stats[0].0,
            stats[1].0,
            diff / se
        );
    }
}
