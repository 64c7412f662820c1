//! SBML import against the DSMTS (the SBML discrete stochastic model test
//! suite, Evans, Gillespie & Wilkinson 2008): the simulated means and
//! variances of its mass-action cases — birth–death (001-01),
//! immigration–death (002-01), dimerisation (003-01) — against the exact
//! values the suite publishes (analytic for the first two, the chemical
//! master equation for the third, solved here and checked against the
//! suite's published table). Plus one BioModels model (Vilar 2002,
//! BIOMD0000000035) against the same network written by hand, a reversible
//! law split in two, and inferred parameters.
//!
//! The DSMTS criteria: with `N` paths, the mean's `Z = √N (x̄ − μ)/σ` and the
//! variance's `Y = √(N/2) (s²/σ² − 1)`; the suite asks `|Z| < 3` and
//! `|Y| < 5` at each time. Here 5 times per species are checked, so `|Z| <
//! 4` (two-sided tail 6·10⁻⁵ per check) and `|Y| < 5`.

use pcmc_core::model::{Network, ReactionSpec, Term};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{Outcome, Ssa};
use pcmc_job::job::sbml::{Imported, read};

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sbml")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn import(name: &str, infer: &[&str]) -> Imported {
    let infer: Vec<String> = infer.iter().map(|s| s.to_string()).collect();
    read(&fixture(name), &infer).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `n` paths of the imported model at fixed rates, each recorded at times
/// 1, 2, …, `t_max`: `[path][time][species]`.
fn paths(m: &Imported, theta: &[f64], n: u64, t_max: usize, seed: u64) -> Vec<Vec<Vec<u64>>> {
    let net = &m.network;
    let s = net.species().len();
    let ssa = Ssa::new(net, theta, &vec![u64::MAX >> 8; s], u64::MAX);
    let mut cum = vec![0.0; net.reactions().len()];
    let x0: Vec<u64> = m
        .initial
        .iter()
        .map(|c| c.expect("an initial amount"))
        .collect();
    (0..n)
        .map(|i| {
            let mut x = x0.clone();
            let mut rng = StreamKey::new(seed, 0, 0, 0, i, Purpose::Test).rng();
            (1..=t_max)
                .map(|t| {
                    let (o, _) = ssa.advance(&mut x, (t - 1) as f64, t as f64, &mut rng, &mut cum);
                    assert_eq!(o, Outcome::Reached);
                    x.clone()
                })
                .collect()
        })
        .collect()
}

/// The DSMTS checks of species `s` at `times` against exact `(mean, var)`.
fn dsmts_check(
    label: &str,
    p: &[Vec<Vec<u64>>],
    s: usize,
    times: &[usize],
    exact: impl Fn(usize) -> (f64, f64),
) {
    let n = p.len() as f64;
    for &t in times {
        let xs: Vec<f64> = p.iter().map(|path| path[t - 1][s] as f64).collect();
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        let (mu, var) = exact(t);
        let z = n.sqrt() * (m - mu) / var.sqrt();
        let y = (n / 2.0).sqrt() * (v / var - 1.0);
        assert!(
            z.abs() < 4.0 && y.abs() < 5.0,
            "{label} at t = {t}: mean {m:.4} vs {mu:.4} (Z = {z:.2}), variance {v:.3} vs {var:.3} (Y = {y:.2})"
        );
    }
}

const TIMES: [usize; 5] = [10, 20, 30, 40, 50];
const N: u64 = 10_000;

#[test]
fn dsmts_birth_death_001_01() {
    let m = import("birth-death-l3v1.xml", &[]);
    assert_eq!(m.network.species(), ["X"]);
    assert!(m.network.parameters().is_empty());
    assert_eq!(m.network.rates(&[]), vec![0.1, 0.11]);
    assert_eq!(m.initial, vec![Some(100)]);
    // X(t): mean 100·e^{(λ−μ)t}, variance 100·(λ+μ)/(λ−μ)·e^{(λ−μ)t}(e^{(λ−μ)t} − 1).
    let (l, mu) = (0.1f64, 0.11f64);
    let exact = |t: usize| {
        let g = ((l - mu) * t as f64).exp();
        (100.0 * g, 100.0 * (l + mu) / (l - mu) * g * (g - 1.0))
    };
    // The suite's published mean at t = 50 (dsmts-001-01-mean.csv).
    assert!((exact(50).0 - 60.65307).abs() < 1e-5);
    let p = paths(&m, &[], N, 50, 1);
    dsmts_check("birth-death X", &p, 0, &TIMES, exact);
}

#[test]
fn dsmts_immigration_death_002_01() {
    let m = import("immigration-death-l2v4.xml", &[]);
    assert_eq!(m.network.rates(&[]), vec![1.0, 0.1]);
    // X(t) ~ Poisson(α/μ·(1 − e^{−μt})) from X(0) = 0.
    let exact = |t: usize| {
        let m = 10.0 * (1.0 - (-0.1 * t as f64).exp());
        (m, m)
    };
    assert!((exact(50).0 - 9.932621).abs() < 1e-6);
    let p = paths(&m, &[], N, 50, 2);
    dsmts_check("immigration-death X", &p, 0, &TIMES, exact);
}

/// The dimerisation's exact law by its master equation: `n` dimers,
/// `P = 100 − 2n`; `n → n+1` at `k1·P(P−1)/2`, `n → n−1` at `k2·n`; solved
/// by uniformisation. Returns `(mean P, var P, mean P2, var P2)` at `t`.
fn dimer_cme(t: f64) -> (f64, f64, f64, f64) {
    let (k1, k2) = (0.001, 0.01);
    let up = |n: usize| {
        let p = 100.0 - 2.0 * n as f64;
        k1 * p * (p - 1.0) / 2.0
    };
    let down = |n: usize| k2 * n as f64;
    let lam = (0..=50).map(|n| up(n) + down(n)).fold(0.0, f64::max) * 1.01;
    let mut v = vec![0.0; 51];
    v[0] = 1.0;
    let mut out = vec![0.0; 51];
    // Σ_k Poisson(k; Λt) v P^k, P = I + Q/Λ.
    let mut weight = (-lam * t).exp();
    let kmax = (lam * t + 20.0 * (lam * t).sqrt() + 50.0) as usize;
    for k in 0..=kmax {
        for n in 0..=50 {
            out[n] += weight * v[n];
        }
        let mut next = vec![0.0; 51];
        for n in 0..=50 {
            let (u, d) = (up(n), down(n));
            next[n] += v[n] * (1.0 - (u + d) / lam);
            if n < 50 {
                next[n + 1] += v[n] * u / lam;
            }
            if n > 0 {
                next[n - 1] += v[n] * d / lam;
            }
        }
        v = next;
        weight *= lam * t / (k + 1) as f64;
    }
    let m2: f64 = (0..=50).map(|n| out[n] * n as f64).sum();
    let s2: f64 = (0..=50).map(|n| out[n] * (n as f64).powi(2)).sum();
    let var2 = s2 - m2 * m2;
    (100.0 - 2.0 * m2, 4.0 * var2, m2, var2)
}

#[test]
fn dsmts_dimerisation_003_01() {
    let m = import("dimerisation-l2v4.xml", &[]);
    assert_eq!(m.network.species(), ["P", "P2"]);
    // k1·P(P−1)/2 is read as C(P, 2) with c = k1.
    assert_eq!(m.network.rates(&[]), vec![0.001, 0.01]);
    assert_eq!(m.network.reactions()[0].reactants, vec![(0, 2)]);
    // The master equation reproduces the suite's published table
    // (dsmts-003-01-mean.csv and -sd.csv, six decimals).
    for (t, mp, sp, mp2, sp2) in [
        (10.0, 52.214271, 5.51176, 23.892864, 2.75588),
        (50.0, 28.542298, 4.789331, 35.728851, 2.394665),
    ] {
        let (a, va, b, vb) = dimer_cme(t);
        assert!((a - mp).abs() < 2e-5, "P mean at {t}: {a} vs {mp}");
        assert!(
            (va.sqrt() - sp).abs() < 2e-5,
            "P sd at {t}: {} vs {sp}",
            va.sqrt()
        );
        assert!((b - mp2).abs() < 2e-5, "P2 mean at {t}: {b} vs {mp2}");
        assert!(
            (vb.sqrt() - sp2).abs() < 2e-5,
            "P2 sd at {t}: {} vs {sp2}",
            vb.sqrt()
        );
    }
    let p = paths(&m, &[], N, 50, 3);
    dsmts_check("dimerisation P", &p, 0, &TIMES, |t| {
        let (a, va, _, _) = dimer_cme(t as f64);
        (a, va)
    });
    dsmts_check("dimerisation P2", &p, 1, &TIMES, |t| {
        let (_, _, b, vb) = dimer_cme(t as f64);
        (b, vb)
    });
}

/// An inferred parameter is θ's entry; the rest stay fixed, and the
/// network at θ = the file's value is the fixed one.
#[test]
fn inferred_parameters_enter_theta() {
    let fixed = import("dimerisation-l2v4.xml", &[]);
    let m = import("dimerisation-l2v4.xml", &["k2"]);
    assert_eq!(m.network.parameters(), ["k2"]);
    assert_eq!(m.network.rates(&[0.01]), fixed.network.rates(&[]));
    assert_eq!(m.network.rates(&[0.5]), vec![0.001, 0.5]);
    // A local parameter is named reaction.parameter.
    let m = import(
        "immigration-death-l2v4.xml",
        &["Death.Mu", "Immigration.Alpha"],
    );
    assert_eq!(m.network.parameters(), ["Immigration.Alpha", "Death.Mu"]);
    assert_eq!(m.network.rates(&[2.0, 3.0]), vec![2.0, 3.0]);
    assert_eq!(m.values["Death.Mu"], 0.1);
}

/// `V·(kf·A·B − kr·C)` with concentrations in a compartment of size 2
/// becomes `A + B → C` at `(kf/2)·A·B` and `C → A + B` at `kr·C`.
#[test]
fn reversible_law_is_split() {
    let m = import("reversible-l3v2.xml", &["kf"]);
    let net = &m.network;
    assert_eq!(net.parameters(), ["kf"]);
    let names: Vec<&str> = net.reactions().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Bind", "Bind_reverse"]);
    assert_eq!(net.rates(&[0.4]), vec![0.2, 0.3]);
    assert_eq!(net.reactions()[0].reactants, vec![(0, 1), (1, 1)]);
    assert_eq!(net.reactions()[1].reactants, vec![(2, 1)]);
    assert_eq!(net.reactions()[1].change, vec![(0, 1), (1, 1), (2, -1)]);
}

/// BioModels BIOMD0000000035 (Vilar 2002): 16 reactions with local
/// parameters, catalysts (a gene transcribed stays), an `EmptySet`
/// boundary species. Imported, it is the network written by hand, and the
/// two simulate the same bytes.
#[test]
fn biomodels_vilar_2002_is_the_hand_written_network() {
    let m = import("../../../../jobs/vilar2002.xml", &[]);
    let species = ["A", "C", "DA", "DAp", "DR", "DRp", "MA", "MR", "R"];
    assert_eq!(m.network.species(), species);
    assert_eq!(
        m.initial,
        vec![
            Some(0),
            Some(0),
            Some(1),
            Some(0),
            Some(1),
            Some(0),
            Some(0),
            Some(0),
            Some(0)
        ]
    );
    let t = |s: &str| Term {
        species: s.into(),
        count: 1,
    };
    #[allow(clippy::type_complexity)]
    let table: [(&[&str], &[&str], f64); 16] = [
        (&["A", "R"], &["C"], 2.0),
        (&["A"], &[], 1.0),
        (&["C"], &["R"], 1.0),
        (&["R"], &[], 0.2),
        (&["A", "DA"], &["DAp"], 1.0),
        (&["DAp"], &["A", "DA"], 50.0),
        (&["DA"], &["DA", "MA"], 50.0),
        (&["DAp"], &["DAp", "MA"], 500.0),
        (&["MA"], &[], 10.0),
        (&["MA"], &["MA", "A"], 50.0),
        (&["A", "DR"], &["DRp"], 1.0),
        (&["DRp"], &["DR", "A"], 100.0),
        (&["DR"], &["DR", "MR"], 0.01),
        (&["DRp"], &["DRp", "MR"], 50.0),
        (&["MR"], &[], 0.5),
        (&["MR"], &["MR", "R"], 5.0),
    ];
    let specs: Vec<ReactionSpec> = table
        .iter()
        .enumerate()
        .map(|(j, (r, p, _))| ReactionSpec {
            name: format!("Reaction{}", j + 1),
            reactants: r.iter().map(|s| t(s)).collect(),
            products: p.iter().map(|s| t(s)).collect(),
            rate: format!("k{j}"),
        })
        .collect();
    let hand = Network::new(
        species.iter().map(|s| s.to_string()).collect(),
        (0..16).map(|j| format!("k{j}")).collect(),
        &specs,
    )
    .unwrap();
    let theta: Vec<f64> = table.iter().map(|r| r.2).collect();
    assert_eq!(m.network.rates(&[]), hand.rates(&theta));
    for (a, b) in m.network.reactions().iter().zip(hand.reactions()) {
        assert_eq!(
            (&a.name, &a.reactants, &a.change),
            (&b.name, &b.reactants, &b.change)
        );
    }
    // The same paths, bit for bit.
    let x0: Vec<u64> = m.initial.iter().map(|c| c.unwrap()).collect();
    let caps = vec![1u64 << 40; species.len()];
    let (sa, sb) = (
        Ssa::new(&m.network, &[], &caps, u64::MAX),
        Ssa::new(&hand, &theta, &caps, u64::MAX),
    );
    let mut cum = vec![0.0; 16];
    for i in 0..20 {
        let (mut xa, mut xb) = (x0.clone(), x0.clone());
        let mut ra = StreamKey::new(7, 0, 0, 0, i, Purpose::Test).rng();
        let mut rb = StreamKey::new(7, 0, 0, 0, i, Purpose::Test).rng();
        let a = sa.advance(&mut xa, 0.0, 50.0, &mut ra, &mut cum);
        let b = sb.advance(&mut xb, 0.0, 50.0, &mut rb, &mut cum);
        assert_eq!((a, &xa), (b, &xb));
        assert!(a.1 > 1000, "an oscillator fires many reactions: {}", a.1);
    }
}
