//! The physical extension codec: how pcmc's operators and functions travel
//! from the driver to the scheduler and from the scheduler to remote
//! executors. Each carries its step's values (θ, the filtering
//! problem, the step's times, maximum and weight prefixes) as JSON behind a
//! short tag, so a remote executor rebuilds exactly the driver's function;
//! anything else goes to Ballista's own codecs (its shuffle and scan nodes
//! travel through them).

use crate::guard::{MAX_HOLD_MS, MAX_PARTICLES, MAX_PARTS, MAX_SPECIES, check_layout};
use crate::plans::{
    InitialExec, Layout, ProbeExec, PropScanExec, ResampleScanExec, SharedCheck, Smc2PassExec,
    SpillExec,
};
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use pcmc_dataflow::params::{Shared, StepWire};
use pcmc_dataflow::smc2::PassJob;
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
    Smc2Passes {
        layout: Layout,
        job: PassJob,
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
            Node::Smc2Passes { layout, job } => {
                self.layout_ok(layout)?;
                check_counts(layout.n, layout.parts, 0)?;
                job.check().map_err(codec_err)?;
                if layout.n != job.passes.len() || layout.parts > layout.n.max(1) {
                    return Err(codec_err(format!(
                        "a batch of {} passes laid out as {} in {} partitions",
                        job.passes.len(),
                        layout.n,
                        layout.parts
                    )));
                }
            }
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
            Node::Smc2Passes { layout, job } => {
                Arc::new(Smc2PassExec::new(layout, Arc::new(job), input))
            }
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
        } else if let Some(x) = node.downcast_ref::<Smc2PassExec>() {
            Node::Smc2Passes {
                layout: x.layout.clone(),
                job: (*x.job).clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plans::tokens;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
    use pcmc_core::smc2::{Lineage, PassRequest, Segment};
    use std::path::Path;

    fn batch(pass_dir: PathBuf, theta: &[f64], observations: usize) -> Arc<dyn ExecutionPlan> {
        let problem = pcmc_core::workloads::lv11(10, 1);
        let lineage = Lineage(vec![Segment {
            from: 0,
            key: pcmc_core::filter::FilterKey {
                seed: 1,
                chain: 0,
                iteration: 0,
            },
        }]);
        let r = PassRequest {
            theta,
            lineage: &lineage,
            observations,
            stop: None,
        };
        let job = PassJob::new(&problem, &[r.clone(), r]);
        let layout = Layout {
            pass_dir,
            species: problem.network().species().to_vec(),
            observed: problem.observations().species_used(),
            n: 2,
            parts: 2,
            heartbeat_ms: 1000,
        };
        Arc::new(Smc2PassExec::new(layout, Arc::new(job), tokens(2).unwrap()))
    }

    /// Encodes `plan`'s top node and decodes it with a codec confined to
    /// `root`.
    fn round_trip(plan: &Arc<dyn ExecutionPlan>, root: &Path) -> DfResult<Arc<dyn ExecutionPlan>> {
        let conv = DefaultPhysicalProtoConverter {};
        let mut buf = Vec::new();
        PcmcPhysicalCodec::default().try_encode(plan.clone(), &mut buf, &conv)?;
        let ctx = SessionContext::new().task_ctx();
        PcmcPhysicalCodec::confined(root.to_path_buf()).try_decode(&buf, &[tokens(2)?], &ctx, &conv)
    }

    #[test]
    fn smc2_batches_travel_and_malformed_ones_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let run = root.join("pcmc-12-345");
        std::fs::create_dir_all(&run).unwrap();
        let theta = [1.0, 0.005, 0.6];
        let good = batch(run.join("pass-000001"), &theta, 3);
        let back = round_trip(&good, &root).unwrap();
        let back = back.downcast_ref::<Smc2PassExec>().unwrap();
        let orig = good.downcast_ref::<Smc2PassExec>().unwrap();
        assert_eq!(back.job.passes, orig.job.passes);
        assert_eq!(back.layout, orig.layout);
        for (plan, why) in [
            (batch(run.join("pass-000001"), &theta[..2], 3), "malformed"),
            (batch(run.join("pass-000001"), &theta, 0), "malformed"),
            (batch(run.join("pass-000001"), &theta, 17), "malformed"),
            (
                batch(tmp.path().join("pcmc-1-2/pass-1"), &theta, 3),
                "pass directory",
            ),
        ] {
            let err = round_trip(&plan, &root).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
