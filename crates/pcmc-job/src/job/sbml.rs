//! SBML import: Level 2 (versions 1–5) and Level 3 core (versions 1–2),
//! for the mass-action subset, read with `roxmltree` (pure Rust, no DTD).
//!
//! What is read:
//! - constant compartments (their sizes fold into rate constants where a
//!   kinetic law names them, or where a law's species is a concentration);
//! - species with integer initial amounts (a boundary or constant species
//!   is a constant, not a state);
//! - global parameters and a reaction's local parameters
//!   (`reaction.parameter` when inferred);
//! - integer stoichiometries, modifiers and catalysts;
//! - kinetic laws that expand to `c · Π_s C(X_s, o_s)` with `c` a positive
//!   constant or a constant times one inferred parameter: `k*X*Y`,
//!   `k*X*(X-1)/2` (read as `C(X, 2)`), `Cell*k*X` (the volume folded into
//!   `c`); a reversible reaction's law `kf*A*B - kr*C` becomes two
//!   reactions, `R` and `R_reverse`.
//!
//! Everything else is refused with an [`SbmlError`] naming the element, its
//! id and its line: rules, events, function definitions, initial
//! assignments, constraints, `fast` reactions, variable compartments,
//! stoichiometry math, conversion factors, `csymbol` (time, delay,
//! Avogadro), non-polynomial math (`exp`, `piecewise`, …), and laws that
//! are not stochastic mass action (`k*X^2` for `2X →`: write
//! `k*X*(X-1)/2`).

use pcmc_core::model::{Network, ReactionSpec, Term};
use roxmltree::{Document, Node, ParsingOptions};
use std::collections::BTreeMap;
use thiserror::Error;

/// A refused or malformed SBML document: the element, its id and its line.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: <{element}{}>: {reason}", id.as_ref().map(|i| format!(" id={i:?}")).unwrap_or_default())]
pub struct SbmlError {
    /// 1-based line of the element.
    pub line: u32,
    /// The element's local name.
    pub element: String,
    /// Its `id`, if it has one.
    pub id: Option<String>,
    /// Why it is refused.
    pub reason: String,
}

/// An imported model: the network, each species' initial count, and every
/// parameter's value in the file.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The network; its parameters are the inferred names that occur in a
    /// kinetic law, every other rate constant fixed at its SBML value.
    pub network: Network,
    /// Each species' initial amount (`None`: the file gives none, or a
    /// concentration).
    pub initial: Vec<Option<u64>>,
    /// The value of each parameter the file sets (`k`, `R1.k` for a local
    /// one).
    pub values: BTreeMap<String, f64>,
}

/// Largest number of XML nodes read.
const MAX_NODES: u32 = 2_000_000;
/// Deepest MathML nesting followed.
const MAX_DEPTH: usize = 64;
/// Most terms a kinetic law may expand to.
const MAX_TERMS: usize = 4096;
/// Highest power of one symbol in a kinetic law.
const MAX_POWER: u32 = 16;
/// Largest initial amount.
const MAX_AMOUNT: f64 = 1e12;
/// Relative tolerance of the mass-action check.
const TOL: f64 = 1e-9;

fn fail(doc: &Document, node: Node, reason: impl Into<String>) -> SbmlError {
    SbmlError {
        line: doc.text_pos_at(node.range().start).row,
        element: node.tag_name().name().to_string(),
        id: node.attribute("id").map(str::to_string),
        reason: reason.into(),
    }
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

/// A symbol of a kinetic law once read: a state species, an inferred
/// parameter, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Var {
    Species(usize),
    Param(usize),
}

/// A polynomial: monomial (variables with powers, sorted) → coefficient.
type Poly = BTreeMap<Vec<(Var, u32)>, f64>;

fn constant(c: f64) -> Poly {
    let mut p = Poly::new();
    if c != 0.0 {
        p.insert(Vec::new(), c);
    }
    p
}

fn add(a: &Poly, b: &Poly, sign: f64) -> Poly {
    let mut out = a.clone();
    for (m, c) in b {
        *out.entry(m.clone()).or_insert(0.0) += sign * c;
    }
    out.retain(|_, c| *c != 0.0);
    out
}

fn mul(a: &Poly, b: &Poly) -> Option<Poly> {
    let mut out = Poly::new();
    for (ma, ca) in a {
        for (mb, cb) in b {
            let mut m: BTreeMap<Var, u32> = ma.iter().copied().collect();
            for &(v, e) in mb {
                let p = m.entry(v).or_insert(0);
                *p += e;
                if *p > MAX_POWER {
                    return None;
                }
            }
            *out.entry(m.into_iter().collect()).or_insert(0.0) += ca * cb;
            if out.len() > MAX_TERMS {
                return None;
            }
        }
    }
    out.retain(|_, c| *c != 0.0);
    Some(out)
}

fn as_constant(p: &Poly) -> Option<f64> {
    match p.len() {
        0 => Some(0.0),
        1 => p.get(&Vec::new()).copied(),
        _ => None,
    }
}

/// What a symbol in a kinetic law stands for.
#[derive(Debug, Clone)]
enum Symbol {
    /// A state species (index) and the factor that turns its count into
    /// the law's value (1, or 1/V for a concentration).
    Species(usize, f64),
    /// An inferred parameter (its name in θ).
    Inferred(String),
    /// A known number.
    Value(f64),
    /// Known but without a value: the reason.
    Undefined(String),
}

struct Reader<'a, 'i> {
    doc: &'a Document<'i>,
    /// Global symbols: compartments, species, parameters.
    globals: BTreeMap<String, Symbol>,
    /// Inferred parameter names in first-use order.
    inferred: Vec<String>,
    /// The names the job infers.
    infer: &'a [String],
}

impl<'a, 'i> Reader<'a, 'i> {
    fn param_symbol(&self, name: &str, value: Option<f64>, what: &str) -> Symbol {
        if self.infer.iter().any(|n| n == name) {
            return Symbol::Inferred(name.to_string());
        }
        match value {
            Some(v) => Symbol::Value(v),
            None => Symbol::Undefined(format!(
                "{what} {name:?} has no value (give it one, or infer it in [parameters])"
            )),
        }
    }

    /// The polynomial of a MathML node.
    fn expr(
        &mut self,
        node: Node<'a, 'i>,
        locals: &BTreeMap<String, Symbol>,
        depth: usize,
    ) -> Result<Poly, SbmlError> {
        let doc = self.doc;
        if depth > MAX_DEPTH {
            return Err(fail(doc, node, "the kinetic law is nested too deeply"));
        }
        match node.tag_name().name() {
            "ci" => {
                let name = node.text().unwrap_or("").trim();
                let sym = locals
                    .get(name)
                    .or_else(|| self.globals.get(name))
                    .cloned()
                    .ok_or_else(|| {
                        fail(
                            doc,
                            node,
                            format!(
                                "{name:?} is not a species, compartment or parameter of the model"
                            ),
                        )
                    })?;
                Ok(match sym {
                    Symbol::Species(s, f) => {
                        let mut p = Poly::new();
                        p.insert(vec![(Var::Species(s), 1)], f);
                        p
                    }
                    Symbol::Inferred(name) => {
                        // θ's entries in order of first use.
                        let i = match self.inferred.iter().position(|n| *n == name) {
                            Some(i) => i,
                            None => {
                                self.inferred.push(name);
                                self.inferred.len() - 1
                            }
                        };
                        let mut p = Poly::new();
                        p.insert(vec![(Var::Param(i), 1)], 1.0);
                        p
                    }
                    Symbol::Value(v) => constant(v),
                    Symbol::Undefined(why) => return Err(fail(doc, node, why)),
                })
            }
            "cn" => Ok(constant(self.number(node)?)),
            "apply" => {
                let mut els = node.children().filter(Node::is_element);
                let op = els
                    .next()
                    .ok_or_else(|| fail(doc, node, "an empty <apply>"))?;
                let args = els
                    .map(|a| self.expr(a, locals, depth + 1))
                    .collect::<Result<Vec<Poly>, _>>()?;
                let too_big = || fail(doc, node, "the kinetic law expands to too many terms");
                match (op.tag_name().name(), args.as_slice()) {
                    ("times", _) => args
                        .iter()
                        .try_fold(constant(1.0), |acc, a| mul(&acc, a))
                        .ok_or_else(too_big),
                    ("plus", _) => Ok(args.iter().fold(Poly::new(), |acc, a| add(&acc, a, 1.0))),
                    ("minus", [a]) => Ok(add(&Poly::new(), a, -1.0)),
                    ("minus", [a, b]) => Ok(add(a, b, -1.0)),
                    ("divide", [a, b]) => match as_constant(b) {
                        Some(d) if d != 0.0 && d.is_finite() => {
                            Ok(a.iter().map(|(m, c)| (m.clone(), c / d)).collect())
                        }
                        _ => Err(fail(
                            doc,
                            op,
                            "division by a species or an inferred parameter is not mass action",
                        )),
                    },
                    ("power", [a, b]) => match as_constant(b) {
                        Some(e)
                            if e.fract() == 0.0 && (0.0..=f64::from(MAX_POWER)).contains(&e) =>
                        {
                            let mut p = constant(1.0);
                            for _ in 0..e as u32 {
                                p = mul(&p, a).ok_or_else(too_big)?;
                            }
                            Ok(p)
                        }
                        _ => Err(fail(
                            doc,
                            op,
                            "only whole constant powers up to 16 are mass action",
                        )),
                    },
                    (name, _) => Err(fail(
                        doc,
                        op,
                        format!(
                            "MathML <{name}> with {} arguments is not part of a mass-action law (supported: times, plus, minus, divide by a constant, whole powers)",
                            args.len()
                        ),
                    )),
                }
            }
            "semantics" => {
                let first = node
                    .children()
                    .find(Node::is_element)
                    .ok_or_else(|| fail(doc, node, "an empty <semantics>"))?;
                self.expr(first, locals, depth + 1)
            }
            "csymbol" => Err(fail(
                doc,
                node,
                "csymbol (time, delay, Avogadro) is not supported: rates must be constant in time (use a covariate)",
            )),
            other => Err(fail(
                doc,
                node,
                format!("MathML <{other}> is not part of a mass-action law"),
            )),
        }
    }

    fn number(&self, node: Node) -> Result<f64, SbmlError> {
        let doc = self.doc;
        let parts: Vec<String> = node
            .children()
            .filter(|c| c.is_text())
            .map(|c| c.text().unwrap_or("").trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let parse = |t: &str| {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| fail(doc, node, format!("{t:?} is not a finite number")))
        };
        let v = match (node.attribute("type").unwrap_or("real"), parts.as_slice()) {
            ("real" | "integer", [t]) => parse(t)?,
            ("e-notation", [m, e]) => parse(&format!("{m}e{e}"))?,
            ("rational", [n, d]) => {
                let (n, d) = (parse(n)?, parse(d)?);
                if d == 0.0 {
                    return Err(fail(doc, node, "a rational with denominator 0"));
                }
                n / d
            }
            (t, _) => {
                return Err(fail(
                    doc,
                    node,
                    format!("<cn type={t:?}> is not a number pcmc reads"),
                ));
            }
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(fail(doc, node, "not a finite number"))
        }
    }
}

/// A boolean attribute (`true`/`false`/`1`/`0`), or `default`.
fn flag(doc: &Document, node: Node, name: &str, default: bool) -> Result<bool, SbmlError> {
    match node.attribute(name) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(fail(doc, node, format!("{name}={v:?} is not a boolean"))),
    }
}

/// A numeric attribute, if present.
fn value(doc: &Document, node: Node, name: &str) -> Result<Option<f64>, SbmlError> {
    node.attribute(name)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| fail(doc, node, format!("{name}={v:?} is not a finite number")))
        })
        .transpose()
}

fn sid<'a>(doc: &Document, node: Node<'a, '_>) -> Result<&'a str, SbmlError> {
    node.attribute("id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail(doc, node, "has no id"))
}

/// The lists of a model that change its dynamics beyond mass action.
const REFUSED: &[(&str, &str)] = &[
    (
        "listOfFunctionDefinitions",
        "function definitions are not supported: write the law out",
    ),
    (
        "listOfInitialAssignments",
        "initial assignments are not supported: give values directly",
    ),
    (
        "listOfRules",
        "rules (assignment, rate, algebraic) are not supported: the state must change only by reactions",
    ),
    ("listOfConstraints", "constraints are not supported"),
    (
        "listOfEvents",
        "events are not supported: for rates that change at known times, use a covariate",
    ),
];

/// Reads an SBML document. `infer` names the parameters to infer (global
/// ids, or `reaction.local` for a local parameter): each becomes a rate
/// parameter of the network; every other parameter is fixed at its value.
///
/// # Errors
/// [`SbmlError`] for malformed XML or anything outside the mass-action
/// subset, naming the element, its id and its line.
pub fn read(text: &str, infer: &[String]) -> Result<Imported, SbmlError> {
    let doc = Document::parse_with_options(
        text,
        ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_NODES,
            ..ParsingOptions::default()
        },
    )
    .map_err(|e| SbmlError {
        line: e.pos().row,
        element: "xml".into(),
        id: None,
        reason: format!("not well-formed XML: {e}"),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "sbml" {
        return Err(fail(&doc, root, "the root element is not <sbml>"));
    }
    let level = root.attribute("level").unwrap_or("");
    let version = root.attribute("version").unwrap_or("");
    match (level, version) {
        ("2", "1" | "2" | "3" | "4" | "5") | ("3", "1" | "2") => {}
        _ => {
            return Err(fail(
                &doc,
                root,
                format!(
                    "SBML level {level:?} version {version:?} is not read (Level 2 versions 1–5 and Level 3 core)"
                ),
            ));
        }
    }
    let l3 = level == "3";
    for a in root.attributes() {
        if a.name() == "required" && a.value() == "true" {
            return Err(fail(
                &doc,
                root,
                "the model requires an SBML Level 3 package (required=\"true\"): only core is read",
            ));
        }
    }
    let model = child(root, "model").ok_or_else(|| fail(&doc, root, "no <model>"))?;
    if l3 && model.attribute("conversionFactor").is_some() {
        return Err(fail(&doc, model, "conversion factors are not supported"));
    }
    for (list, why) in REFUSED {
        if let Some(l) = child(model, list)
            && let Some(first) = l.children().find(Node::is_element)
        {
            return Err(fail(&doc, first, *why));
        }
    }

    let mut globals: BTreeMap<String, Symbol> = BTreeMap::new();
    let mut values: BTreeMap<String, f64> = BTreeMap::new();
    let mut declare = |doc: &Document, node: Node, id: &str, sym: Symbol| {
        if globals.insert(id.to_string(), sym).is_some() {
            Err(fail(doc, node, format!("the id {id:?} is declared twice")))
        } else {
            Ok(())
        }
    };

    // Compartments: constant sizes.
    let mut sizes: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for c in children(model, "listOfCompartments").flat_map(|l| children(l, "compartment")) {
        let id = sid(&doc, c)?;
        if !flag(&doc, c, "constant", true)? {
            return Err(fail(
                &doc,
                c,
                "a compartment whose size changes is not supported",
            ));
        }
        let size = match value(&doc, c, "size")? {
            Some(v) => Some(v),
            None => value(&doc, c, "volume")?,
        };
        if let Some(v) = size
            && v <= 0.0
        {
            return Err(fail(&doc, c, format!("size {v} is not positive")));
        }
        sizes.insert(id.to_string(), size);
        declare(
            &doc,
            c,
            id,
            match size {
                Some(v) => Symbol::Value(v),
                None => Symbol::Undefined(format!(
                    "compartment {id:?} has no size: give it one to use it in a kinetic law"
                )),
            },
        )?;
    }

    // Species.
    let mut species: Vec<String> = Vec::new();
    let mut initial: Vec<Option<u64>> = Vec::new();
    for s in children(model, "listOfSpecies").flat_map(|l| children(l, "species")) {
        let id = sid(&doc, s)?;
        if s.attribute("conversionFactor").is_some() {
            return Err(fail(&doc, s, "conversion factors are not supported"));
        }
        let comp = s.attribute("compartment").unwrap_or("");
        let size = sizes
            .get(comp)
            .ok_or_else(|| fail(&doc, s, format!("compartment {comp:?} is not declared")))?;
        let amounts = flag(&doc, s, "hasOnlySubstanceUnits", false)?;
        let constant =
            flag(&doc, s, "boundaryCondition", false)? || flag(&doc, s, "constant", false)?;
        let amount = value(&doc, s, "initialAmount")?;
        let conc = value(&doc, s, "initialConcentration")?;
        // What the species' symbol means in a law: its amount, or its
        // concentration amount/V.
        let per = if amounts {
            Some(1.0)
        } else {
            size.map(|v| 1.0 / v)
        };
        let sym = if constant {
            // A boundary or constant species: a number.
            let a = match (amount, conc, *size) {
                (Some(a), _, _) => Some(a),
                (None, Some(c), Some(v)) => Some(c * v),
                _ => None,
            };
            match (a, per) {
                (Some(a), Some(f)) => Symbol::Value(a * f),
                _ => Symbol::Undefined(format!(
                    "the constant species {id:?} has no amount (or its compartment no size)"
                )),
            }
        } else {
            let count = match (amount, conc) {
                (Some(a), _) => {
                    if !((0.0..=MAX_AMOUNT).contains(&a) && a.fract() == 0.0) {
                        return Err(fail(
                            &doc,
                            s,
                            format!("initialAmount {a} is not a whole count in 0..=1e12"),
                        ));
                    }
                    Some(a as u64)
                }
                _ => None,
            };
            initial.push(count);
            species.push(id.to_string());
            match per {
                Some(f) => Symbol::Species(species.len() - 1, f),
                None => Symbol::Undefined(format!(
                    "species {id:?} is a concentration in compartment {comp:?}, which has no size (set hasOnlySubstanceUnits=\"true\" or give the size)"
                )),
            }
        };
        declare(&doc, s, id, sym)?;
    }
    if species.is_empty() {
        return Err(fail(
            &doc,
            model,
            "the model has no species that reactions change",
        ));
    }

    // Global parameters.
    let mut reader = Reader {
        doc: &doc,
        globals: BTreeMap::new(),
        inferred: Vec::new(),
        infer,
    };
    let mut params: Vec<(Node, String, Option<f64>)> = Vec::new();
    for p in children(model, "listOfParameters").flat_map(|l| children(l, "parameter")) {
        let id = sid(&doc, p)?;
        let v = value(&doc, p, "value")?;
        if let Some(v) = v {
            values.insert(id.to_string(), v);
        }
        params.push((p, id.to_string(), v));
    }
    for (p, id, v) in params {
        let sym = reader.param_symbol(&id, v, "parameter");
        declare(&doc, p, &id, sym)?;
    }
    reader.globals = globals;

    // Reactions.
    let mut specs: Vec<ReactionSpec> = Vec::new();
    // Per spec: the inferred parameter (index) and the constant factor.
    let mut rates: Vec<(Option<usize>, f64)> = Vec::new();
    for r in children(model, "listOfReactions").flat_map(|l| children(l, "reaction")) {
        let rid = sid(&doc, r)?.to_string();
        if flag(&doc, r, "fast", false)? {
            return Err(fail(&doc, r, "fast reactions are not supported"));
        }
        let side = |list: &str| -> Result<BTreeMap<usize, u32>, SbmlError> {
            let mut m = BTreeMap::new();
            for sr in children(r, list).flat_map(|l| children(l, "speciesReference")) {
                if child(sr, "stoichiometryMath").is_some() {
                    return Err(fail(&doc, sr, "stoichiometry math is not supported"));
                }
                let name = sr.attribute("species").unwrap_or("");
                let st = match value(&doc, sr, "stoichiometry")? {
                    Some(v) => v,
                    None if l3 => {
                        return Err(fail(&doc, sr, "the stoichiometry is missing"));
                    }
                    None => 1.0,
                };
                if !(st.fract() == 0.0 && (0.0..=1000.0).contains(&st)) {
                    return Err(fail(
                        &doc,
                        sr,
                        format!("stoichiometry {st} is not a whole number in 0..=1000"),
                    ));
                }
                match reader.globals.get(name) {
                    Some(Symbol::Species(s, _)) => {
                        if st > 0.0 {
                            *m.entry(*s).or_insert(0) += st as u32;
                        }
                    }
                    // A boundary or constant species: unchanged by reactions.
                    Some(Symbol::Value(_) | Symbol::Undefined(_))
                        if species_declared(model, name) => {}
                    _ => {
                        return Err(fail(&doc, sr, format!("{name:?} is not a species")));
                    }
                }
            }
            Ok(m)
        };
        let reactants = side("listOfReactants")?;
        let products = side("listOfProducts")?;
        let law = child(r, "kineticLaw")
            .ok_or_else(|| fail(&doc, r, "the reaction has no kinetic law"))?;
        let mut locals: BTreeMap<String, Symbol> = BTreeMap::new();
        for list in ["listOfParameters", "listOfLocalParameters"] {
            for p in children(law, list)
                .flat_map(|l| l.children().filter(Node::is_element))
                .filter(|p| matches!(p.tag_name().name(), "parameter" | "localParameter"))
            {
                let id = sid(&doc, p)?;
                let v = value(&doc, p, "value")?;
                let full = format!("{rid}.{id}");
                if let Some(v) = v {
                    values.insert(full.clone(), v);
                }
                let sym = reader.param_symbol(&full, v, "local parameter");
                if locals.insert(id.to_string(), sym).is_some() {
                    return Err(fail(
                        &doc,
                        p,
                        format!("the local id {id:?} is declared twice"),
                    ));
                }
            }
        }
        let math = child(law, "math")
            .and_then(|m| m.children().find(Node::is_element))
            .ok_or_else(|| fail(&doc, law, "the kinetic law has no <math>"))?;
        let poly = reader.expr(math, &locals, 0)?;
        let reversible = flag(&doc, r, "reversible", !l3)?;
        for (name, c, orders, prods) in split(&doc, r, &poly, &reactants, &products, reversible)? {
            let mut prods = prods;
            // Catalysts: a species in the law but not consumed is put back.
            let consumed = if name.ends_with("_reverse") {
                &products
            } else {
                &reactants
            };
            for (&s, &o) in &orders {
                let used = consumed.get(&s).copied().unwrap_or(0);
                if o > used {
                    *prods.entry(s).or_insert(0) += o - used;
                }
            }
            let (param, factor) = c;
            let label = |m: &BTreeMap<usize, u32>| {
                m.iter()
                    .map(|(s, c)| Term {
                        species: species[*s].clone(),
                        count: *c,
                    })
                    .collect()
            };
            specs.push(ReactionSpec {
                name: format!("{rid}{name}"),
                reactants: label(&orders),
                products: label(&prods),
                rate: match param {
                    Some(i) => reader.inferred[i].clone(),
                    None => format!("__fixed{}", specs.len()),
                },
            });
            rates.push((param, factor));
        }
    }
    if specs.is_empty() {
        return Err(fail(&doc, model, "the model has no reactions"));
    }
    for n in infer {
        if values.contains_key(n) && !reader.inferred.contains(n) {
            return Err(SbmlError {
                line: doc.text_pos_at(model.range().start).row,
                element: "model".into(),
                id: model.attribute("id").map(str::to_string),
                reason: format!("parameter {n:?} is in [parameters] but in no kinetic law"),
            });
        }
    }
    let mut names = reader.inferred.clone();
    names.extend(
        rates
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| p.is_none())
            .map(|(j, _)| format!("__fixed{j}")),
    );
    let model_err = |e: pcmc_core::Error| fail(&doc, model, e.to_string());
    let mut net = Network::new(species, names, &specs).map_err(model_err)?;
    for (j, (param, factor)) in rates.iter().enumerate() {
        net = match param {
            Some(_) if *factor != 1.0 => net.with_factor(j, *factor),
            Some(_) => Ok(net),
            None => net.with_fixed(&format!("__fixed{j}"), *factor),
        }
        .map_err(model_err)?;
    }
    Ok(Imported {
        network: net,
        initial,
        values,
    })
}

fn species_declared(model: Node, name: &str) -> bool {
    children(model, "listOfSpecies")
        .flat_map(|l| children(l, "species"))
        .any(|s| s.attribute("id") == Some(name))
}

/// `Π_s C(X_s, o_s)` as a polynomial.
fn mass_action(orders: &BTreeMap<usize, u32>) -> Poly {
    let mut p = constant(1.0);
    for (&s, &o) in orders {
        for k in 0..o {
            let mut f = Poly::new();
            f.insert(vec![(Var::Species(s), 1)], 1.0 / f64::from(k + 1));
            if k > 0 {
                f.insert(Vec::new(), -f64::from(k) / f64::from(k + 1));
            }
            p = mul(&p, &f).unwrap_or_default();
        }
    }
    p
}

/// The species part of a monomial (its orders) and its parameter part.
fn parts(m: &[(Var, u32)]) -> (BTreeMap<usize, u32>, Vec<(usize, u32)>) {
    let mut s = BTreeMap::new();
    let mut p = Vec::new();
    for &(v, e) in m {
        match v {
            Var::Species(i) => {
                s.insert(i, e);
            }
            Var::Param(i) => p.push((i, e)),
        }
    }
    (s, p)
}

/// The rate constant of the part of `poly` whose species orders are
/// `orders`: the coefficient of `Π X_s^{o_s}` times `Π o_s!`, with at most
/// one inferred parameter to the power 1.
type Rate = (Option<usize>, f64);

fn rate_of(
    doc: &Document,
    r: Node,
    poly: &Poly,
    orders: &BTreeMap<usize, u32>,
    sign: f64,
) -> Result<Option<Rate>, SbmlError> {
    let lead: Vec<(&Vec<(Var, u32)>, f64)> = poly
        .iter()
        .filter(|(m, _)| parts(m).0 == *orders)
        .map(|(m, c)| (m, *c))
        .collect();
    let (m, c) = match lead.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => {
            return Err(fail(
                doc,
                r,
                "the rate constant is a sum of parameters: infer one parameter per reaction",
            ));
        }
    };
    let param = match parts(m).1.as_slice() {
        [] => None,
        [(i, 1)] => Some(*i),
        [(_, _)] => {
            return Err(fail(
                doc,
                r,
                "an inferred parameter appears to a power other than 1",
            ));
        }
        _ => {
            return Err(fail(
                doc,
                r,
                "the rate constant is a product of several inferred parameters: infer one",
            ));
        }
    };
    let fact: f64 = orders
        .values()
        .map(|&o| (1..=o).map(f64::from).product::<f64>())
        .product();
    let c = sign * c * fact;
    if !(c.is_finite() && c > 0.0) {
        return Err(fail(
            doc,
            r,
            format!("the rate constant {c} is not positive"),
        ));
    }
    Ok(Some((param, c)))
}

/// `c · Π C(X_s, o_s)` with the parameter part of `rate`, as a polynomial.
fn hazard(orders: &BTreeMap<usize, u32>, rate: Rate) -> Poly {
    let k: Poly = match rate {
        (Some(i), c) => [(vec![(Var::Param(i), 1)], c)].into_iter().collect(),
        (None, c) => constant(c),
    };
    mul(&k, &mass_action(orders)).unwrap_or_default()
}

/// A reaction's parts: name suffix, rate, species orders of its hazard,
/// products.
type Part = (String, Rate, BTreeMap<usize, u32>, BTreeMap<usize, u32>);

/// Splits a reaction's law into a forward (and for a reversible reaction a
/// reverse) mass-action hazard, or refuses it.
fn split(
    doc: &Document,
    r: Node,
    poly: &Poly,
    reactants: &BTreeMap<usize, u32>,
    products: &BTreeMap<usize, u32>,
    reversible: bool,
) -> Result<Vec<Part>, SbmlError> {
    if poly.is_empty() {
        return Err(fail(doc, r, "the kinetic law is 0"));
    }
    let scale = poly.values().fold(0.0f64, |m, c| m.max(c.abs()));
    let check = |rest: &Poly, what: &str| -> Result<(), SbmlError> {
        if rest.values().all(|c| c.abs() <= TOL * scale) {
            Ok(())
        } else {
            Err(fail(doc, r, what.to_string()))
        }
    };
    let not_mass_action = "the kinetic law is not stochastic mass action c·Π C(X, n) (for 2X → … write k*X*(X-1)/2, not k*X^2 or k*X*X)";
    if reversible {
        let f = rate_of(doc, r, poly, reactants, 1.0)?;
        let b = rate_of(doc, r, poly, products, -1.0)?;
        let mut rest = poly.clone();
        let mut out = Vec::new();
        if let Some(f) = f {
            rest = add(&rest, &hazard(reactants, f), -1.0);
            out.push((String::new(), f, reactants.clone(), products.clone()));
        }
        if let Some(b) = b {
            rest = add(&rest, &hazard(products, b), 1.0);
            out.push((
                "_reverse".to_string(),
                b,
                products.clone(),
                reactants.clone(),
            ));
        }
        check(
            &rest,
            &format!(
                "{not_mass_action}; a reversible law must be forward minus reverse mass action"
            ),
        )?;
        if out.is_empty() {
            return Err(fail(doc, r, not_mass_action));
        }
        return Ok(out);
    }
    // The law's species orders: those of its highest-degree monomial.
    let (lead, _) = poly
        .keys()
        .map(|m| parts(m).0)
        .map(|o| {
            let d: u32 = o.values().sum();
            (o, d)
        })
        .max_by_key(|(_, d)| *d)
        .expect("a non-empty law");
    for (&s, &n) in reactants {
        if lead.get(&s).copied().unwrap_or(0) < n {
            return Err(fail(
                doc,
                r,
                format!(
                    "the law is of order {} in a reactant consumed {n} at a time, so it would not vanish when that reactant runs out: not mass action",
                    lead.get(&s).copied().unwrap_or(0)
                ),
            ));
        }
    }
    let f = rate_of(doc, r, poly, &lead, 1.0)?.ok_or_else(|| fail(doc, r, not_mass_action))?;
    check(&add(poly, &hazard(&lead, f), -1.0), not_mass_action)?;
    Ok(vec![(String::new(), f, lead, products.clone())])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid model: 2P → P2 at k1·C(P, 2), P2 → 2P at k2·P2.
    const BASE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level2/version4" level="2" version="4">
  <model id="m">
    <listOfCompartments>
      <compartment id="cell" size="1"/>
    </listOfCompartments>
    <listOfSpecies>
      <species id="P" compartment="cell" initialAmount="100" hasOnlySubstanceUnits="true"/>
      <species id="P2" compartment="cell" initialAmount="0" hasOnlySubstanceUnits="true"/>
    </listOfSpecies>
    <listOfParameters>
      <parameter id="k1" value="0.001"/>
      <parameter id="k2" value="0.01"/>
    </listOfParameters>
    <listOfReactions>
      <reaction id="dimer" reversible="false">
        <listOfReactants><speciesReference species="P" stoichiometry="2"/></listOfReactants>
        <listOfProducts><speciesReference species="P2"/></listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><divide/><apply><times/><ci>k1</ci><ci>P</ci><apply><minus/><ci>P</ci><cn>1</cn></apply></apply><cn>2</cn></apply>
        </math></kineticLaw>
      </reaction>
      <reaction id="split" reversible="false">
        <listOfReactants><speciesReference species="P2"/></listOfReactants>
        <listOfProducts><speciesReference species="P" stoichiometry="2"/></listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci>k2</ci><ci>P2</ci></apply>
        </math></kineticLaw>
      </reaction>
    </listOfReactions>
  </model>
</sbml>
"#;

    /// A refusal case: replace `from` by `to`; the error is at `marker`,
    /// on `element` with `id`, for `reason`.
    type Refusal = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    );

    const SPLIT_LAW: &str = "<apply><times/><ci>k2</ci><ci>P2</ci></apply>";

    fn line_of(text: &str, marker: &str) -> u32 {
        let at = text
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?} not in the text"));
        1 + text[..at].matches('\n').count() as u32
    }

    /// `BASE` with `from` replaced by `to` is refused at the element whose
    /// text starts with `marker`, named `element` with `id`, for `reason`.
    fn refused(from: &str, to: &str, marker: &str, element: &str, id: Option<&str>, reason: &str) {
        assert!(BASE.contains(from), "{from:?} not in BASE");
        let text = BASE.replacen(from, to, 1);
        let e = read(&text, &[]).expect_err(to);
        // The marker within the replacement when it is there.
        let start = if to.contains(marker) {
            text.find(to).unwrap_or(0)
        } else {
            0
        };
        let line = line_of(&text[start..], marker) + text[..start].matches('\n').count() as u32;
        assert_eq!(
            (e.line, e.element.as_str(), e.id.as_deref()),
            (line, element, id),
            "{to}: {e}"
        );
        assert!(e.reason.contains(reason), "{to}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("line {}: <{element}", e.line))
        );
    }

    #[test]
    fn the_base_model_reads() {
        let m = read(BASE, &[]).unwrap();
        assert_eq!(m.network.rates(&[]), vec![0.001, 0.01]);
        assert_eq!(m.initial, vec![Some(100), Some(0)]);
    }

    #[test]
    fn refusals_name_element_id_and_line() {
        let model_end = "    </listOfReactions>\n";
        for (list, item, element, id, reason) in [
            (
                "listOfRules",
                r#"<assignmentRule variable="k1"><math xmlns="http://www.w3.org/1998/Math/MathML"><cn>1</cn></math></assignmentRule>"#,
                "assignmentRule",
                None,
                "rules",
            ),
            (
                "listOfEvents",
                r#"<event id="dose"><trigger/></event>"#,
                "event",
                Some("dose"),
                "events are not supported",
            ),
            (
                "listOfFunctionDefinitions",
                r#"<functionDefinition id="f"/>"#,
                "functionDefinition",
                Some("f"),
                "function definitions",
            ),
            (
                "listOfInitialAssignments",
                r#"<initialAssignment symbol="k1"/>"#,
                "initialAssignment",
                None,
                "initial assignments",
            ),
            (
                "listOfConstraints",
                r#"<constraint/>"#,
                "constraint",
                None,
                "constraints",
            ),
        ] {
            let to = format!("{model_end}    <{list}>\n      {item}\n    </{list}>\n");
            refused(model_end, &to, item, element, id, reason);
        }
        // Laws outside mass action, then structure.
        let cases: [Refusal; 13] = [
            (
                SPLIT_LAW,
                "<apply><times/><ci>k2</ci><ci>P2</ci><ci>P2</ci></apply>",
                r#"<reaction id="split""#,
                "reaction",
                Some("split"),
                "not stochastic mass action",
            ),
            (
                SPLIT_LAW,
                "<apply><exp/><ci>P2</ci></apply>",
                "<exp/>",
                "exp",
                None,
                "not part of a mass-action law",
            ),
            (
                SPLIT_LAW,
                "<apply><times/><csymbol encoding=\"text\" definitionURL=\"http://www.sbml.org/sbml/symbols/time\">t</csymbol><ci>P2</ci></apply>",
                "<csymbol",
                "csymbol",
                None,
                "constant in time",
            ),
            (
                SPLIT_LAW,
                "<apply><divide/><ci>k2</ci><ci>P2</ci></apply>",
                "<divide/>",
                "divide",
                None,
                "division by a species",
            ),
            (
                SPLIT_LAW,
                "<ci>k2</ci>",
                r#"<reaction id="split""#,
                "reaction",
                Some("split"),
                "would not vanish",
            ),
            (
                SPLIT_LAW,
                "<apply><times/><ci>kx</ci><ci>P2</ci></apply>",
                "<ci>kx</ci>",
                "ci",
                None,
                "\"kx\" is not a species",
            ),
            (
                SPLIT_LAW,
                "<apply><times/><ci>k2</ci><ci>P2</ci><cn type=\"complex-cartesian\">1<sep/>2</cn></apply>",
                "<cn type",
                "cn",
                None,
                "not a number",
            ),
            (
                r#"<reaction id="split" reversible="false">"#,
                r#"<reaction id="split" reversible="false" fast="true">"#,
                r#"<reaction id="split""#,
                "reaction",
                Some("split"),
                "fast reactions",
            ),
            (
                r#"<listOfReactants><speciesReference species="P2"/>"#,
                r#"<listOfReactants><speciesReference species="P2" stoichiometry="1.5"/>"#,
                r#"<speciesReference species="P2" stoichiometry="1.5""#,
                "speciesReference",
                None,
                "not a whole number",
            ),
            (
                r#"<compartment id="cell" size="1"/>"#,
                r#"<compartment id="cell" size="1" constant="false"/>"#,
                r#"<compartment id="cell""#,
                "compartment",
                Some("cell"),
                "size changes",
            ),
            (
                r#"initialAmount="100""#,
                r#"initialAmount="100.5""#,
                r#"<species id="P" "#,
                "species",
                Some("P"),
                "not a whole count",
            ),
            (
                r#"level="2" version="4""#,
                r#"level="1" version="2""#,
                "<sbml",
                "sbml",
                None,
                "level \"1\"",
            ),
            (
                r#"<reaction id="split" reversible="false">"#,
                r#"<reaction id="split" reversible="false"><listOfReactants><speciesReference species="Q"/></listOfReactants>"#,
                r#"<speciesReference species="Q""#,
                "speciesReference",
                None,
                "\"Q\" is not a species",
            ),
        ];
        for (from, to, marker, element, id, reason) in cases {
            refused(from, to, marker, element, id, reason);
        }
    }

    #[test]
    fn malformed_xml_and_dtd_are_refused() {
        let e = read("<sbml>\n<model>\n</sbml>", &[]).unwrap_err();
        assert_eq!((e.element.as_str(), e.line), ("xml", 3), "{e}");
        let dtd = "<?xml version=\"1.0\"?>\n<!DOCTYPE sbml [<!ENTITY a \"aaaa\">]>\n<sbml level=\"2\" version=\"4\"/>";
        let e = read(dtd, &[]).unwrap_err();
        assert!(e.reason.contains("XML"), "{e}");
        assert!(read("", &[]).is_err());
    }

    #[test]
    fn inferred_parameters_must_appear_alone() {
        // Two inferred parameters multiply.
        let text = BASE.replacen(
            SPLIT_LAW,
            "<apply><times/><ci>k1</ci><ci>k2</ci><ci>P2</ci></apply>",
            1,
        );
        let e = read(&text, &["k1".into(), "k2".into()]).unwrap_err();
        assert!(e.reason.contains("several inferred parameters"), "{e}");
        // Squared.
        let text = BASE.replacen(
            SPLIT_LAW,
            "<apply><times/><ci>k2</ci><ci>k2</ci><ci>P2</ci></apply>",
            1,
        );
        let e = read(&text, &["k2".into()]).unwrap_err();
        assert!(e.reason.contains("power other than 1"), "{e}");
        // A parameter named for inference but in no law.
        let text = BASE.replacen(
            "<parameter id=\"k2\" value=\"0.01\"/>",
            "<parameter id=\"k2\" value=\"0.01\"/><parameter id=\"k3\" value=\"1\"/>",
            1,
        );
        let e = read(&text, &["k3".into()]).unwrap_err();
        assert!(e.reason.contains("in no kinetic law"), "{e}");
        // A constant folded: 0.5·k2·P2 with k2 inferred.
        let text = BASE.replacen(
            SPLIT_LAW,
            "<apply><times/><cn type=\"rational\">1<sep/>2</cn><ci>k2</ci><ci>P2</ci></apply>",
            1,
        );
        let m = read(&text, &["k2".into()]).unwrap();
        assert_eq!(m.network.rates(&[0.4]), vec![0.001, 0.2]);
    }
}
