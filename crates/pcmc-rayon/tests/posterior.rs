//! Posterior recovery on lv11: a PMMH run on data simulated from θ_true puts
//! every θ_true inside its 99 % posterior interval, with a sensible
//! acceptance rate.
use pcmc_core::diagnostics::{quantile_sorted, summarize};
use pcmc_core::prelude::*;
use pcmc_core::workloads::{log_uniform_priors, lv11};
use pcmc_rayon::rayon_executor;

#[test]
fn lv11_recovers_true_parameters() {
    let truth = [1.0, 0.005, 0.6];
    let problem = lv11(150, 2018);
    let priors = log_uniform_priors(&truth, 100.0);
    let burn_in = 500;
    let pmmh = Pmmh::new(
        problem,
        priors,
        PmmhConfig {
            seed: 7,
            chains: 2,
            burn_in,
            iterations: 1500,
            thin: 1,
            init: vec![0.8, 0.006, 0.5],
            start: StartPoints::Dispersed { sd: 0.1 },
            proposal: ProposalCovariance::Diagonal(vec![0.03; 3]),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: Some(AdaptConfig {
                start: 100,
                every: 50,
            }),
        },
    )
    .unwrap();
    let mut exec = rayon_executor(2).unwrap();
    let mut draws = vec![vec![Vec::new(); 2]; 3];
    let states = pmmh
        .run(&mut exec, |rec, _| {
            assert!(!rec.loglik.is_nan());
            if rec.kept {
                for (p, x) in rec.theta.iter().enumerate() {
                    draws[p][rec.chain as usize].push(*x);
                }
            }
            Ok(())
        })
        .unwrap();
    for (p, t) in truth.iter().enumerate() {
        let mut all: Vec<f64> = draws[p].iter().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        let (lo, hi) = (quantile_sorted(&all, 0.005), quantile_sorted(&all, 0.995));
        let s = summarize(&draws[p]);
        eprintln!(
            "θ{p}: true {t}, 99% interval [{lo:.5}, {hi:.5}], mean {:.5}, ess {:?}, rhat {:?}",
            s.mean, s.ess, s.rhat
        );
        assert!(lo <= *t && *t <= hi, "θ{p} = {t} outside [{lo}, {hi}]");
        assert!(
            hi / lo < 10.0,
            "θ{p}: the interval [{lo}, {hi}] is too wide to mean anything"
        );
    }
    for st in &states {
        let rate = st.accepted_after_burn_in as f64 / 1500.0;
        eprintln!("chain {}: acceptance {rate:.3}", st.chain);
        assert!((0.05..=0.6).contains(&rate), "acceptance {rate}");
    }
}
