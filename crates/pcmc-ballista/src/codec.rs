//! The physical extension codec: how pcmc's operators and functions travel
//! from the driver to the scheduler and from the scheduler to remote
//! executors. Each carries its step's values (θ, the filtering
//! problem, the step's times, maximum and weight prefixes) as JSON behind a
//! short tag, so a remote executor rebuilds exactly the driver's function;
//! anything else goes to Ballista's own codecs (its shuffle and scan nodes
//! travel through them).

use crate::guard::{MAX_HOLD_MS, MAX_PARTICLES, MAX_PARTS, MAX_SPECIES, check_layout};
use crate::plans::{
    InitialExec, Layout, ProbeExec, PropScanExec, ResampleScanExec, SharedCheck, SpillExec,
};
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use pcmc_dataflow::params::{Shared, StepWire};
use pcmc_dataflow::udf::{LogWeight, PartitionOf, Propagate, WeightSum, WeightSumUdaf};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Tag in front of every payload pcmc encodes.
const TAG: &[u8] = b"pcmc/1:";

/// Everything pcmc puts on the wire.
#[derive(Debug, Serialize, Deserialize)]
enum Node {
    Propagate {
        wire: StepWire,
        species: Vec<String>,
        n: usize,
        parts: usize,
    },
    LogWeight {
        wire: StepWire,
        observed: usize,
    },
    PartitionOf {
        n: usize,
        parts: usize,
    },
    WeightSum {
        wire: StepWire,
        which: u8,
    },
    Initial {
        layout: Layout,
    },
    ResampleScan {
        layout: Layout,
        wire: StepWire,
    },
    PropScan {
        layout: Layout,
        step: u64,
    },
    Spill {
        layout: Layout,
        step: u64,
    },
    Probe {
        hold_ms: u64,
        shared: Option<SharedCheck>,
    },
}

fn codec_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Internal(format!("pcmc codec: {}", msg.into()))
}

fn encode(node: &Node, buf: &mut Vec<u8>) -> DfResult<()> {
    buf.extend_from_slice(TAG);
    serde_json::to_writer(&mut *buf, node).map_err(|e| codec_err(e.to_string()))
}

/// The node in `buf` if pcmc encoded it.
fn decode(buf: &[u8]) -> DfResult<Option<Node>> {
    match buf.strip_prefix(TAG) {
        Some(body) => serde_json::from_slice(body)
            .map(Some)
            .map_err(|e| codec_err(e.to_string())),
        None => Ok(None),
    }
}

fn wire_of(shared: &Shared, what: &str) -> DfResult<StepWire> {
    shared
        .wire()
        .ok_or_else(|| codec_err(format!("{what} has no step values to send")))
}

fn which_code(w: WeightSum) -> u8 {
    match w {
        WeightSum::Total => 0,
        WeightSum::High => 1,
        WeightSum::HighSquared => 2,
    }
}

fn which_of(code: u8) -> DfResult<WeightSum> {
    Ok(match code {
        0 => WeightSum::Total,
        1 => WeightSum::High,
        2 => WeightSum::HighSquared,
        _ => return Err(codec_err(format!("unknown weight sum {code}"))),
    })
}

fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<bool> {
    let inner = node.inner();
    let n = if let Some(p) = inner.downcast_ref::<Propagate>() {
        let (n, parts) = p.layout();
        Node::Propagate {
            wire: wire_of(p.shared(), "pcmc_propagate")?,
            species: p.species().to_vec(),
            n,
            parts,
        }
    } else if let Some(w) = inner.downcast_ref::<LogWeight>() {
        Node::LogWeight {
            wire: wire_of(w.shared(), "pcmc_log_weight")?,
            observed: w.observed(),
        }
    } else if let Some(p) = inner.downcast_ref::<PartitionOf>() {
        let (n, parts) = p.layout();
        Node::PartitionOf { n, parts }
    } else {
        return Ok(false);
    };
    encode(&n, buf)?;
    Ok(true)
}

fn decode_udf(node: Node) -> DfResult<Arc<ScalarUDF>> {
    match &node {
        Node::Propagate {
            species, n, parts, ..
        } => check_counts(*n, *parts, species.len())?,
        Node::PartitionOf { n, parts } => check_counts(*n, *parts, 0)?,
        _ => {}
    }
    Ok(Arc::new(match node {
        Node::Propagate {
            wire,
            species,
            n,
            parts,
        } => ScalarUDF::new_from_impl(Propagate::new(Shared::from_wire(wire), &species, n, parts)),
        Node::LogWeight { wire, observed } => {
            ScalarUDF::new_from_impl(LogWeight::new(Shared::from_wire(wire), observed))
        }
        Node::PartitionOf { n, parts } => {
            ScalarUDF::new_from_impl(PartitionOf::new(Shared::new(0.0), n, parts))
        }
        other => return Err(codec_err(format!("not a scalar function: {other:?}"))),
    }))
}

fn encode_udaf(node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<bool> {
    match node.inner().downcast_ref::<WeightSumUdaf>() {
        Some(w) => {
            encode(
                &Node::WeightSum {
                    wire: wire_of(w.shared(), "pcmc_weight_sum")?,
                    which: which_code(w.which()),
                },
                buf,
            )?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn decode_udaf(node: Node) -> DfResult<Arc<AggregateUDF>> {
    match node {
        Node::WeightSum { wire, which } => Ok(Arc::new(AggregateUDF::new_from_impl(
            WeightSumUdaf::new(Shared::from_wire(wire), which_of(which)?),
        ))),
        other => Err(codec_err(format!("not an aggregate function: {other:?}"))),
    }
}

/// The physical codec of pcmc's scheduler and executors: pcmc's operators
/// and functions, then Ballista's (which also carries its shuffle nodes).
///
/// On an executor it is [`confined`](PcmcPhysicalCodec::confined) to the
/// executor's work root: every decoded operator's pass directory is
/// checked ([`check_layout`]) and its counts bounded before the operator
/// exists, so a plan can name no file outside the root.
#[derive(Debug, Default)]
pub struct PcmcPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    root: Option<PathBuf>,
}

impl PcmcPhysicalCodec {
    /// A codec whose decoded operators must keep their files under `root`.
    pub fn confined(root: PathBuf) -> Self {
        PcmcPhysicalCodec {
            inner: BallistaPhysicalExtensionCodec::default(),
            root: Some(root),
        }
    }

    fn layout_ok(&self, layout: &Layout) -> DfResult<()> {
        match &self.root {
            Some(root) => check_layout(layout, root),
            None => Ok(()),
        }
    }
}

/// Bounds on the counts a decoded function carries.
fn check_counts(n: usize, parts: usize, species: usize) -> DfResult<()> {
    if n > MAX_PARTICLES || parts == 0 || parts > MAX_PARTS || species > MAX_SPECIES {
        return Err(codec_err(format!(
            "{n} particles, {parts} partitions, {species} species: out of bounds"
        )));
    }
    Ok(())
}

impl PhysicalExtensionCodec for PcmcPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(mut node) = decode(buf)? else {
            return self.inner.try_decode(buf, inputs, ctx, proto_converter);
        };
        let [input] = inputs else {
            return Err(codec_err("pcmc's operators have one input"));
        };
        let input = input.clone();
        match &mut node {
            Node::Initial { layout }
            | Node::ResampleScan { layout, .. }
            | Node::PropScan { layout, .. }
            | Node::Spill { layout, .. } => self.layout_ok(layout)?,
            Node::Probe { hold_ms, .. } if *hold_ms > MAX_HOLD_MS => {
                return Err(codec_err(format!(
                    "a probe may hold at most {MAX_HOLD_MS} ms"
                )));
            }
            Node::Probe {
                shared: Some(check),
                ..
            } => {
                if check.nonce.len() > 128 {
                    return Err(codec_err("a probe's nonce is at most 128 bytes"));
                }
                // A directory this executor does not have is the probe's
                // answer, not a refusal: the check reads nothing then.
                if let Err(e) = self.layout_ok(&check.layout) {
                    check.refused = Some(e.to_string());
                }
            }
            _ => {}
        }
        Ok(match node {
            Node::Initial { layout } => Arc::new(InitialExec::new(layout, input)),
            Node::ResampleScan { layout, wire } => {
                Arc::new(ResampleScanExec::new(layout, wire, input))
            }
            Node::PropScan { layout, step } => Arc::new(PropScanExec::new(layout, step, input)),
            Node::Probe { hold_ms, shared } => {
                Arc::new(ProbeExec::new(hold_ms, input).checking(shared))
            }
            Node::Spill { layout, step } => Arc::new(SpillExec::new(input, layout, step)),
            other => return Err(codec_err(format!("not an operator: {other:?}"))),
        })
    }
    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let n = if let Some(x) = node.downcast_ref::<InitialExec>() {
            Node::Initial {
                layout: x.layout.clone(),
            }
        } else if let Some(x) = node.downcast_ref::<ResampleScanExec>() {
            Node::ResampleScan {
                layout: x.layout.clone(),
                wire: x.wire.clone(),
            }
        } else if let Some(x) = node.downcast_ref::<PropScanExec>() {
            Node::PropScan {
                layout: x.layout.clone(),
                step: x.step,
            }
        } else if let Some(x) = node.downcast_ref::<ProbeExec>() {
            Node::Probe {
                hold_ms: x.hold_ms,
                shared: x.shared.clone(),
            }
        } else if let Some(x) = node.downcast_ref::<SpillExec>() {
            Node::Spill {
                layout: x.layout.clone(),
                step: x.step,
            }
        } else {
            return self.inner.try_encode(node, buf, proto_converter);
        };
        encode(&n, buf)
    }
    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        match decode(buf)? {
            Some(n) => decode_udf(n),
            None => self.inner.try_decode_udf(name, buf),
        }
    }
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        if encode_udf(node, buf)? {
            Ok(())
        } else {
            self.inner.try_encode_udf(node, buf)
        }
    }
    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        match decode(buf)? {
            Some(n) => decode_udaf(n),
            None => self.inner.try_decode_udaf(name, buf),
        }
    }
    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        if encode_udaf(node, buf)? {
            Ok(())
        } else {
            self.inner.try_encode_udaf(node, buf)
        }
    }
}
