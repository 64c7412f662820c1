//! Covariate tables and problems on the wire: rows in force, refusals,
//! and a filtering problem with several data sets, covariates and initial
//! laws checked again when it is decoded.

use pcmc_core::covariate::Covariates;
use pcmc_core::filter::{DataSet, FilterConfig, FilterProblem};
use pcmc_core::model::Network;
use pcmc_core::observation::{Data, InitialPrior, ObservationModel, Observations};

fn table() -> Covariates {
    Covariates::new(
        vec!["open".into()],
        vec![0.0, 2.0],
        vec![vec![1.0], vec![0.5]],
    )
    .unwrap()
}

#[test]
fn rows_and_refusals() {
    let c = table();
    assert_eq!(c.row_at(-1.0), None);
    assert_eq!(c.row_at(0.0), Some(0));
    assert_eq!(c.row_at(1.999), Some(0));
    assert_eq!(c.row_at(2.0), Some(1));
    for (times, values, needle) in [
        (
            vec![0.0, 0.0],
            vec![vec![1.0], vec![1.0]],
            "after the previous",
        ),
        (vec![0.0], vec![vec![-1.0]], "≥ 0"),
        (vec![0.0], vec![vec![f64::NAN]], "≥ 0"),
        (vec![0.0], vec![vec![1.0, 2.0]], "2 values"),
    ] {
        let e = Covariates::new(vec!["open".into()], times, values).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
}

/// A problem travels with its data sets, initial laws and covariates,
/// and is checked again on arrival: a covariate table out of range or
/// a set without its description is refused.
#[test]
fn problems_are_checked_again_on_the_wire() {
    let base = Network::immigration_death();
    let net = base.with_covariate(0, "open").unwrap();
    let x = ["X".to_string()];
    let d1 = Data::new(&net, vec![1.0, 3.0], &x, vec![vec![5.0], vec![7.0]]).unwrap();
    let d2 = Data::new(&net, vec![0.5], &x, vec![vec![2.0]]).unwrap();
    let data = Data::concat(vec![d1, d2]).unwrap();
    let obs = Observations::from_model(&net, &ObservationModel::Poisson, data).unwrap();
    let set = |m: f64| DataSet {
        initial: InitialPrior::new(&net, vec![m]).unwrap(),
        t0: 0.0,
        covariates: Some(table()),
    };
    let p = FilterProblem::from_sets(
        net.clone(),
        obs.clone(),
        vec![set(5.0), set(2.0)],
        FilterConfig::new(8, 1),
    )
    .unwrap();
    let wire = serde_json::to_value(&p).unwrap();
    let back: FilterProblem = serde_json::from_value(wire.clone()).unwrap();
    assert_eq!(back.sets(), p.sets());
    let mut bad = wire.clone();
    bad["sets"].as_array_mut().unwrap().pop();
    let e = serde_json::from_value::<FilterProblem>(bad).unwrap_err();
    assert!(e.to_string().contains("1 set descriptions for 2"), "{e}");
    let mut bad = wire.clone();
    bad["sets"][1]["covariates"]["values"][0][0] = serde_json::json!(-3.0);
    assert!(serde_json::from_value::<FilterProblem>(bad).is_err());
    let mut bad = wire;
    bad["sets"][0]["initial"]["counts"][0] = serde_json::json!({ "Poisson": -1.0 });
    assert!(serde_json::from_value::<FilterProblem>(bad).is_err());
    // Without a table the covariate cannot be honoured.
    let e = FilterProblem::from_sets(
        net.clone(),
        obs,
        vec![
            set(5.0),
            DataSet {
                covariates: None,
                ..set(2.0)
            },
        ],
        FilterConfig::new(8, 1),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("data set 2") && e.to_string().contains("open"),
        "{e}"
    );
}

/// A network with fixed and scaled rate constants (an SBML model's) and an
/// initial law with θ-given counts survive the JSON wire: the same rates at
/// every θ, the same counts.
#[test]
fn fixed_rates_and_theta_counts_round_trip() {
    use pcmc_core::observation::InitialCount;
    let net = Network::lotka_volterra(1)
        .unwrap()
        .with_fixed("predation1", 0.005)
        .unwrap()
        .with_factor(0, 2.0)
        .unwrap();
    assert_eq!(net.parameters(), ["birth", "death1"]);
    assert_eq!(net.rates(&[0.5, 0.3]), vec![1.0, 0.005, 0.3]);
    let back: Network = serde_json::from_str(&serde_json::to_string(&net).unwrap()).unwrap();
    assert_eq!(back, net);
    assert_eq!(back.rates(&[0.7, 0.1]), net.rates(&[0.7, 0.1]));
    // A plain network's wire form has no trace of the new fields.
    let plain = serde_json::to_string(&Network::lotka_volterra(1).unwrap()).unwrap();
    assert!(!plain.contains("factor"), "{plain}");
    let law = InitialPrior::with_counts(
        &net,
        vec![
            InitialCount::Theta {
                constant: 50,
                plus: None,
                minus: Some(1),
            },
            InitialCount::Theta {
                constant: 0,
                plus: Some(1),
                minus: None,
            },
        ],
    )
    .unwrap();
    let back: InitialPrior = serde_json::from_str(&serde_json::to_string(&law).unwrap()).unwrap();
    assert_eq!(back.counts(), law.counts());
    assert!(back.valid_at(&[0.1, 49.4]) && !back.valid_at(&[0.1, 50.5]));
    // Refused on arrival: one parameter added and subtracted.
    let bad = r#"{"counts":[{"Theta":{"constant":1,"plus":0,"minus":0}},{"Fixed":0}]}"#;
    assert!(serde_json::from_str::<InitialPrior>(bad).is_err());
}

/// A network decoded from the wire is checked again: every hostile edit
/// of a valid one (an index out of range, a negative or NaN rate factor, a
/// zero order, a counter that is a reactant…) is refused, and the valid
/// one decodes to itself.
#[test]
fn hostile_networks_are_refused_on_arrival() {
    let net = Network::lotka_volterra(1)
        .unwrap()
        .with_fixed("predation1", 0.005)
        .unwrap()
        .with_counter("births", &[0])
        .unwrap();
    let text = serde_json::to_string(&net).unwrap();
    let back: Network = serde_json::from_str(&text).unwrap();
    assert_eq!(back, net);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 10] = [
        ("rate index", |v| v["reactions"][0]["rate"] = 7.into()),
        ("negative factor", |v| {
            v["reactions"][1]["factor"] = (-0.5).into()
        }),
        ("zero factor", |v| v["reactions"][1]["factor"] = 0.0.into()),
        ("reactant species", |v| {
            v["reactions"][0]["reactants"][0][0] = 9.into()
        }),
        ("zero order", |v| {
            v["reactions"][0]["reactants"][0][1] = 0.into()
        }),
        ("change species", |v| {
            v["reactions"][2]["change"][0][0] = 99.into()
        }),
        ("zero change", |v| {
            v["reactions"][2]["change"][0][1] = 0.into()
        }),
        ("counter out of range", |v| v["counters"][0] = 5.into()),
        ("counter is a reactant", |v| v["counters"][0] = 0.into()),
        ("no species", |v| v["species"] = serde_json::json!([])),
    ];
    for (what, edit) in edits {
        let mut w = v.clone();
        edit(&mut w);
        assert!(
            serde_json::from_value::<Network>(w).is_err(),
            "{what}: accepted"
        );
    }
    // NaN travels as null, which is not a number: refused too.
    let mut w = v.clone();
    w["reactions"][1]["factor"] = serde_json::Value::Null;
    assert!(serde_json::from_value::<Network>(w).is_err());
}
