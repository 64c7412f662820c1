//! The block kernel against the scalar kernel on random networks, parameters
//! and time spans (property test).
use pcmc_core::model::{Network, ReactionSpec, Term};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, Outcome, Ssa};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn block_equals_scalar(
        species in 1usize..4,
        seed in any::<u64>(),
        lanes in 1usize..70,
        span in 0.01f64..3.0,
        raw in prop::collection::vec((side(3), side(3), -3.0f64..1.0), 1..6),
        init in prop::collection::vec(0u64..60, 3),
        cap in 50u64..5000,
        max_events in 1u64..3000,
    ) {
        let reactions: Vec<_> = raw.iter().map(|(r, p, _)| {
            (r.iter().map(|(s, c)| (s % species, *c)).collect::<Vec<_>>(),
             p.iter().map(|(s, c)| (s % species, *c)).collect::<Vec<_>>())
        }).collect();
        let net = network(&reactions, species);
        prop_assume!(net.is_some());
        let net = net.unwrap();
        let theta: Vec<f64> = raw.iter().map(|(_, _, lr)| 10f64.powf(*lr)).collect();
        let ssa = Ssa::new(&net, &theta, &vec![cap; species], max_events);
        let mut cum = vec![0.0; theta.len()];
        let mut block = vec![0u64; species * lanes];
        let mut scalar = Vec::new();
        for j in 0..lanes {
            let mut x: Vec<u64> = (0..species).map(|s| init[s] + j as u64 % 7).collect();
            for s in 0..species { block[s * lanes + j] = x[s]; }
            let mut rng = StreamKey::new(seed, 0, 0, 0, j as u64, Purpose::Test).rng();
            let r = ssa.advance(&mut x, 0.5, 0.5 + span, &mut rng, &mut cum);
            scalar.push((x, r));
        }
        let mut rngs: Vec<_> = (0..lanes)
            .map(|j| StreamKey::new(seed, 0, 0, 0, j as u64, Purpose::Test).rng())
            .collect();
        let mut outcomes = vec![Outcome::Reached; lanes];
        let c = ssa.advance_block(&mut block, lanes, 0.5, 0.5 + span, &mut rngs, &mut outcomes, &mut BlockScratch::default());
        let mut events = 0;
        for (j, (x, (o, e))) in scalar.iter().enumerate() {
            for s in 0..species { prop_assert_eq!(block[s * lanes + j], x[s]); }
            prop_assert_eq!(outcomes[j], *o);
            events += e;
        }
        prop_assert_eq!(c.events, events);
    }
}
