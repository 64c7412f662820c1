//! The block and AVX2 kernels against the scalar kernel on random networks,
//! parameters, time spans, caps and event limits (property tests). The
//! scalar kernel runs its specialised fixed-size path for small product
//! networks with caps below 2^51 and the generic event step otherwise; the
//! block kernel always runs the generic step, so these tests compare the
//! two paths as well.
use pcmc_core::model::{Network, ReactionSpec, Term};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, KernelChoice, Outcome, Ssa, SsaCounters};
use proptest::prelude::*;

/// Reactant or product terms as (species, coefficient).
type Side = Vec<(usize, u32)>;

fn network(reactions: &[(Side, Side)], species: usize) -> Option<Network> {
    let names: Vec<String> = (0..species).map(|s| format!("S{s}")).collect();
    let specs: Vec<ReactionSpec> = reactions
        .iter()
        .enumerate()
        .map(|(j, (r, p))| ReactionSpec {
            name: format!("r{j}"),
            reactants: r
                .iter()
                .map(|(s, c)| Term {
                    species: names[*s].clone(),
                    count: *c,
                })
                .collect(),
            products: p
                .iter()
                .map(|(s, c)| Term {
                    species: names[*s].clone(),
                    count: *c,
                })
                .collect(),
            rate: format!("k{j}"),
        })
        .collect();
    let params = (0..reactions.len()).map(|j| format!("k{j}")).collect();
    Network::new(names, params, &specs).ok()
}

fn side(species: usize) -> impl Strategy<Value = Vec<(usize, u32)>> {
    prop::collection::vec((0..species, 1u32..3), 0..3)
}

/// Runs `len` particles from `init(j)` with every kernel and checks that
/// states, outcomes and all counters agree with the scalar kernel, particle
/// by particle. The block has a stride wider than `len` as the filter's
/// last block does.
fn all_kernels_agree(
    ssa: &Ssa,
    species: usize,
    len: usize,
    seed: u64,
    t0: f64,
    t1: f64,
    init: impl Fn(usize, usize) -> u64,
) -> Result<(), TestCaseError> {
    let stride = len + 3;
    let key = |j: usize| StreamKey::new(seed, 0, 0, 0, j as u64, Purpose::Test);
    let mut want = vec![0u64; species * stride];
    let mut want_o = Vec::new();
    let mut want_c = SsaCounters::default();
    let mut cum = vec![0.0; ssa.n_reactions()];
    for j in 0..len {
        let mut x: Vec<u64> = (0..species).map(|s| init(j, s)).collect();
        let o = ssa.advance_counted(&mut x, t0, t1, &mut key(j).rng(), &mut cum, &mut want_c);
        for s in 0..species {
            want[s * stride + j] = x[s];
        }
        want_o.push(o);
    }
    for kernel in [
        KernelChoice::Scalar,
        KernelChoice::Batch,
        KernelChoice::Simd,
    ] {
        let mut block = vec![0u64; species * stride];
        for j in 0..len {
            for s in 0..species {
                block[s * stride + j] = init(j, s);
            }
        }
        let mut outcomes = vec![Outcome::Reached; len];
        let c = ssa.propagate(
            kernel,
            &mut block,
            stride,
            len,
            t0,
            t1,
            key,
            &mut outcomes,
            &mut BlockScratch::default(),
        );
        prop_assert_eq!(&block, &want, "states, kernel {:?}", kernel);
        prop_assert_eq!(&outcomes, &want_o, "outcomes, kernel {:?}", kernel);
        prop_assert_eq!(c, want_c, "counters, kernel {:?}", kernel);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn every_kernel_equals_scalar_on_random_networks(
        species in 1usize..5,
        seed in any::<u64>(),
        lanes in 1usize..70,
        span in 0.01f64..3.0,
        // Up to 4 species and 9 reactions: every size of the specialised
        // scalar kernel (≤ 4 species, ≤ 8 reactions) and beyond it.
        raw in prop::collection::vec((side(4), side(4), -3.0f64..1.0), 1..10),
        init in prop::collection::vec(0u64..60, 4),
        cap in prop_oneof![50u64..5000, Just(u64::MAX)],
        max_events in 1u64..3000,
        no_limit in any::<bool>(),
        huge in any::<bool>(),
    ) {
        // No cap, or counts of 2^51 that only decay, with no event limit
        // could run for ever.
        let max_events = if no_limit && cap != u64::MAX && !huge { u64::MAX } else { max_events };
        let reactions: Vec<_> = raw.iter().map(|(r, p, _)| {
            (r.iter().map(|(s, c)| (s % species, *c)).collect::<Vec<_>>(),
             p.iter().map(|(s, c)| (s % species, *c)).collect::<Vec<_>>())
        }).collect();
        let net = network(&reactions, species);
        prop_assume!(net.is_some());
        let net = net.unwrap();
        let theta: Vec<f64> = raw.iter().map(|(_, _, lr)| 10f64.powf(*lr)).collect();
        let ssa = Ssa::new(&net, &theta, &vec![cap; species], max_events);
        // With `huge`, every fifth particle starts above 2^51 (beyond the
        // AVX2 lanes' exact range: it runs through the scalar kernel).
        all_kernels_agree(&ssa, species, lanes, seed, 0.5, 0.5 + span, |j, s| {
            if huge && j % 5 == 2 && s == 0 { (1 << 51) + j as u64 } else { init[s] + j as u64 % 7 }
        })?;
    }

    #[test]
    fn every_kernel_equals_scalar_on_lotka_volterra(
        k in 1usize..4,
        seed in any::<u64>(),
        lanes in 1usize..40,
        span in 0.05f64..2.0,
        log_theta in prop::collection::vec(-0.3f64..0.3, 3),
        cap in 200u64..100_000,
        // Rates set to 0 (±0.0) and predators started extinct: zero
        // hazards, in the middle and at the end of the cumulative sums.
        zero_rate in prop::collection::vec(prop_oneof![6 => Just(None), 1 => Just(Some(0.0)), 1 => Just(Some(-0.0))], 7),
        extinct in prop::collection::vec(prop::bool::weighted(0.2), 3),
    ) {
        let net = Network::lotka_volterra(k).unwrap();
        let base = [1.0, 0.005, 0.6];
        let theta: Vec<f64> = (0..net.parameters().len())
            .map(|i| zero_rate[i].unwrap_or(base[i.min(2)] * 10f64.powf(log_theta[i.min(2)])))
            .collect();
        let ssa = Ssa::new(&net, &theta, &vec![cap; k + 1], 1_000_000);
        if pcmc_core::ssa::avx2::available() {
            prop_assert!(ssa.simd_active());
        }
        all_kernels_agree(&ssa, k + 1, lanes, seed, 0.0, span, |j, s| {
            if s == 0 {
                50 + j as u64 % 13
            } else if extinct[s - 1] {
                0
            } else {
                100 + (j * s) as u64 % 17
            }
        })?;
    }

}

proptest! {
    // Heavier cases (lv12 runs ~3·10^4 events per particle per time unit):
    // fewer of them.
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// lv12 at its true θ over a quarter of an observation interval with
    /// caps that fire for many particles: every kernel stops each particle
    /// at the same event, state and counter.
    #[test]
    fn kernels_agree_at_the_cap_on_lv12(
        seed in any::<u64>(),
        lanes in 8usize..30,
        cap in 900u64..2000,
    ) {
        let net = Network::lotka_volterra(2).unwrap();
        let ssa = Ssa::new(&net, &[10.0, 0.005, 0.0025, 6.0, 3.0], &[cap; 3], 10_000_000);
        let hits = cap_hits(&ssa, 3, lanes, seed, 1.0, |j, s| [800, 500, 600][s] + j as u64 % 11);
        prop_assert!(hits > 0, "no particle reached the cap {}", cap);
        all_kernels_agree(&ssa, 3, lanes, seed, 0.0, 1.0, |j, s| {
            [800, 500, 600][s] + j as u64 % 11
        })?;
    }

    /// Lotka–Volterra with 1–3 predators, prey plentiful and predator caps
    /// that fire (the prey's cap is out of reach): every kernel stops each
    /// particle at the same predation event.
    #[test]
    fn kernels_agree_at_a_predator_cap_on_lotka_volterra(
        k in 1usize..4,
        seed in any::<u64>(),
        lanes in 8usize..30,
        cap in 110u64..300,
    ) {
        let net = Network::lotka_volterra(k).unwrap();
        let theta: Vec<f64> = (0..net.parameters().len())
            .map(|i| [1.0, 0.005, 0.6][if i == 0 { 0 } else if i <= k { 1 } else { 2 }])
            .collect();
        let mut caps = vec![cap; k + 1];
        caps[0] = 1_000_000;
        let ssa = Ssa::new(&net, &theta, &caps, 10_000_000);
        let init = |j: usize, s: usize| if s == 0 { 600 + j as u64 % 13 } else { 100 + j as u64 % 5 };
        let hits = cap_hits(&ssa, k + 1, lanes, seed, 1.0, init);
        prop_assert!(hits > 0, "no particle reached the cap {}", cap);
        all_kernels_agree(&ssa, k + 1, lanes, seed, 0.0, 1.0, init)?;
    }

    /// The hare–lynx job's four-reaction network (separate predation and
    /// predator-birth rates) near its posterior mean over two years, with a
    /// hare cap that fires for many particles.
    #[test]
    fn kernels_agree_at_the_cap_on_hare_lynx(
        seed in any::<u64>(),
        lanes in 8usize..40,
        cap in 350u64..600,
    ) {
        let net = network(
            &[
                (vec![(0, 1)], vec![(0, 2)]),
                (vec![(0, 1), (1, 1)], vec![(1, 1)]),
                (vec![(0, 1), (1, 1)], vec![(0, 1), (1, 2)]),
                (vec![(1, 1)], vec![]),
            ],
            2,
        )
        .unwrap();
        let ssa = Ssa::new(&net, &[0.54, 0.0027, 0.0026, 0.87], &[cap, 100_000], 10_000_000);
        let hits = cap_hits(&ssa, 2, lanes, seed, 2.0, |j, s| [300, 40][s] + j as u64 % 7);
        prop_assert!(hits > 0, "no particle reached the cap {}", cap);
        all_kernels_agree(&ssa, 2, lanes, seed, 0.0, 2.0, |j, s| [300, 40][s] + j as u64 % 7)?;
    }
}

/// Cap hits of the scalar kernel for the particles `all_kernels_agree` runs
/// (so the cap tests are known to exercise the cap).
fn cap_hits(
    ssa: &Ssa,
    species: usize,
    len: usize,
    seed: u64,
    t1: f64,
    init: impl Fn(usize, usize) -> u64,
) -> u64 {
    let mut c = SsaCounters::default();
    let mut cum = vec![0.0; ssa.n_reactions()];
    for j in 0..len {
        let mut x: Vec<u64> = (0..species).map(|s| init(j, s)).collect();
        let mut rng = StreamKey::new(seed, 0, 0, 0, j as u64, Purpose::Test).rng();
        ssa.advance_counted(&mut x, 0.0, t1, &mut rng, &mut cum, &mut c);
    }
    c.cap_hits
}
