//! Reading an SBML document from arbitrary bytes returns an error or a
//! valid model, never panics or runs away (the XML node count, MathML depth
//! and polynomial size are bounded); a model read is simulated a little.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::Ssa;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let infer: Vec<String> = ["k1", "k2", "kf", "Reaction4.deltaR", "R1.k"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(m) = pcmc_job::job::sbml::read(&text, &infer) {
        let net = &m.network;
        let theta = vec![0.5; net.parameters().len()];
        let rates = net.rates(&theta);
        assert!(rates.iter().all(|r| r.is_finite() && *r > 0.0));
        assert_eq!(m.initial.len(), net.species().len());
        let caps = vec![1u64 << 20; net.species().len()];
        let ssa = Ssa::new(net, &theta, &caps, 1000);
        let mut x: Vec<u64> = m.initial.iter().map(|c| c.unwrap_or(0).min(1000)).collect();
        let mut cum = vec![0.0; net.reactions().len()];
        let mut rng = StreamKey::new(1, 0, 0, 0, 0, Purpose::Test).rng();
        let _ = ssa.advance(&mut x, 0.0, 1.0, &mut rng, &mut cum);
    }
});
