//! # pcmc-mpi
//!
//! The MPI executor: each rank owns a contiguous slice of the particles
//! ([`pcmc_core::filter::rank_slice`]). Propagation and weighting are local;
//! the largest log-weight is reduced (`MPI_Allreduce`), the exact u128 weight
//! sums are gathered (`MPI_Allgather`, every rank then forms the same global
//! prefix), every rank derives its own offspring from that prefix and the
//! shared keyed uniform, and one variable all-to-all (`MPI_Alltoallv`)
//! carries runs of `(count, state)` so that each rank again owns a balanced
//! contiguous slice. There is no master rank: PMMH decisions are computed
//! identically on every rank from keyed streams, so nothing but these
//! reductions and the particle exchange crosses the network.
//!
//! The filter itself is `pcmc_core::filter::run_filter_on`; results are bit
//! for bit those of the serial executor for any number of ranks.
//!
//! # Several chains
//! [`MpiExecutor::from_world_grouped`] splits the world into `G` groups of
//! consecutive ranks (`MPI_Comm_split`); chain `i` runs on group `i % G`, whose
//! ranks share its particles. After each iteration the groups exchange their
//! chains' states (a few hundred bytes, `MPI_Allgatherv` over the world), so
//! every rank holds every chain and rank 0 of the world writes all outputs.
//!
//! # SMC²
//! For SMC² ([`pcmc_core::smc2::PassBatch`]) every rank runs the same
//! sampler on the same θ-particles (their filters are keyed histories, so
//! nothing but θ and a few keys defines them) and computes the filter
//! passes of the θ-particles `m ≡ rank (mod size)` with its own threads; one
//! `MPI_Allgatherv` of the log-likelihoods (8 bytes per θ-particle) gives
//! every rank every result. No particle, filter state or θ crosses the
//! network: resampling and moves are computed identically on every rank.
#![deny(missing_docs)]

use mpi::Count;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use pcmc_core::accept::AcceptTest;
use pcmc_core::filter::{
    BlockRunner, Collective, FilterKey, FilterOutput, FilterProblem, Workspace, run_filter_on,
};
use pcmc_core::smc2::{PassBatch, PassRequest};
use pcmc_core::{ChainGroup, Error, LikelihoodExecutor, Result};
use std::time::{Duration, Instant};

/// How long a rank waiting for the others after propagation polls before it
/// starts sleeping.
const SPIN: Duration = Duration::from_micros(50);
/// The first sleep of a waiting rank.
const MIN_PAUSE: Duration = Duration::from_micros(20);
/// The longest sleep of a waiting rank: the most a step can be delayed.
const MAX_PAUSE: Duration = Duration::from_micros(500);

/// A [`Collective`] over an MPI communicator.
pub struct MpiComm {
    comm: SimpleCommunicator,
}

impl MpiComm {
    /// Wraps a communicator.
    pub fn new(comm: SimpleCommunicator) -> Self {
        MpiComm { comm }
    }

    /// The communicator.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.comm
    }
}

impl Collective for MpiComm {
    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    /// The first collective after each propagation step, where ranks that
    /// finished their particles wait for the slowest: a non-blocking
    /// all-reduce, tested in a short spin and then with sleeps of growing
    /// length (up to 500 µs), so that a waiting rank gives its core
    /// back instead of spinning inside MPI. On machines whose cores share
    /// execution units (SMT siblings, or oversubscribed ranks), a spinning
    /// rank slows down the rank it waits for.
    fn max_f64(&self, x: f64) -> Result<f64> {
        let mut out = f64::NEG_INFINITY;
        mpi::request::scope(|scope| {
            let mut req =
                self.comm
                    .immediate_all_reduce_into(scope, &x, &mut out, SystemOperation::max());
            let start = Instant::now();
            let mut pause = MIN_PAUSE;
            loop {
                match req.test() {
                    Ok(_) => break,
                    Err(r) => req = r,
                }
                if start.elapsed() > SPIN {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        Ok(out)
    }

    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<u64>> {
        let mut buf = vec![0u64; local.len() * self.size()];
        self.comm.all_gather_into(local, &mut buf[..]);
        Ok(buf)
    }

    fn all_to_all(&self, send: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        let size = self.size();
        let too_big = || Error::Executor("an MPI message would exceed 2^31 values".into());
        let scounts: Vec<Count> = send
            .iter()
            .map(|v| Count::try_from(v.len()).map_err(|_| too_big()))
            .collect::<Result<_>>()?;
        let mut rcounts = vec![0 as Count; size];
        self.comm.all_to_all_into(&scounts[..], &mut rcounts[..]);
        let displs = |c: &[Count]| -> Result<Vec<Count>> {
            let mut d = Vec::with_capacity(c.len());
            let mut acc: i64 = 0;
            for x in c {
                d.push(Count::try_from(acc).map_err(|_| too_big())?);
                acc += i64::from(*x);
            }
            Ok(d)
        };
        let sdispls = displs(&scounts)?;
        let rdispls = displs(&rcounts)?;
        let flat: Vec<u64> = send.concat();
        let total: usize = rcounts.iter().map(|c| *c as usize).sum();
        let mut recv = vec![0u64; total];
        {
            let sp = Partition::new(&flat[..], &scounts[..], &sdispls[..]);
            let mut rp = PartitionMut::new(&mut recv[..], &rcounts[..], &rdispls[..]);
            self.comm.all_to_all_varcount_into(&sp, &mut rp);
        }
        Ok(rcounts
            .iter()
            .zip(&rdispls)
            .map(|(c, d)| recv[*d as usize..(*d + *c) as usize].to_vec())
            .collect())
    }
}

/// The MPI executor: [`run_filter_on`] over an [`MpiComm`], each rank mapping
/// its blocks over `R` (serial, or a thread pool for hybrid MPI + threads).
pub struct MpiExecutor<R> {
    /// The group's communicator: the ranks sharing one chain's particles.
    comm: MpiComm,
    /// Every rank of the run.
    world: SimpleCommunicator,
    group: ChainGroup,
    runner: R,
    workspace: Workspace,
    _universe: Option<Universe>,
}

impl<R: BlockRunner> MpiExecutor<R> {
    /// Initialises MPI (once per process) and builds an executor over the
    /// world communicator.
    ///
    /// # Errors
    /// [`Error::Executor`] if MPI was already initialised elsewhere, or if
    /// `SLURM_NTASKS` is set and differs from the world size (an MPI launched
    /// under the wrong Slurm plugin starts separate one-rank worlds).
    pub fn from_world(runner: R) -> Result<Self> {
        Self::from_world_grouped(runner, 1)
    }

    /// As [`MpiExecutor::from_world`], with the world split into
    /// `min(groups, world size)` groups of consecutive ranks, one per chain
    /// (chain `i` on group `i % G`).
    ///
    /// # Errors
    /// As [`MpiExecutor::from_world`]; `groups == 0` is an error too.
    pub fn from_world_grouped(runner: R, groups: usize) -> Result<Self> {
        if groups == 0 {
            return Err(Error::Executor("at least one chain group is needed".into()));
        }
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Executor("MPI was already initialised in this process".into()))?;
        let world = universe.world();
        if let Ok(n) = std::env::var("SLURM_NTASKS")
            && let Ok(n) = n.trim().parse::<i32>()
            && n != world.size()
            && std::env::var("PCMC_IGNORE_SLURM_NTASKS").is_err()
        {
            return Err(Error::Executor(format!(
                "SLURM_NTASKS is {n} but the MPI world has {} rank(s): launch with `srun --mpi=pmix` \
                 (OpenMPI) or `srun --mpi=pmi2` (MPICH), or `mpirun` inside the allocation",
                world.size()
            )));
        }
        let mut exec = Self::grouped(world, groups, runner)?;
        exec._universe = Some(universe);
        Ok(exec)
    }

    /// An executor over `world` (MPI already initialised) split into
    /// `min(groups, size)` chain groups.
    ///
    /// # Errors
    /// [`Error::Executor`] if the split fails.
    pub fn grouped(world: SimpleCommunicator, groups: usize, runner: R) -> Result<Self> {
        let size = world.size() as usize;
        let rank = world.rank() as usize;
        let g = groups.clamp(1, size);
        // Balanced groups of consecutive ranks: rank r is in group ⌊r·G/W⌋.
        let index = rank * g / size;
        let comm = if g == 1 {
            world.duplicate()
        } else {
            world
                .split_by_color(mpi::topology::Color::with_value(index as i32))
                .ok_or_else(|| Error::Executor("MPI_Comm_split returned no communicator".into()))?
        };
        let leader = comm.rank() == 0;
        Ok(MpiExecutor {
            comm: MpiComm::new(comm),
            world,
            group: ChainGroup {
                index,
                count: g,
                leader,
            },
            runner,
            workspace: Workspace::default(),
            _universe: None,
        })
    }

    /// An executor over an existing communicator (MPI already initialised),
    /// all its ranks in one group.
    pub fn new(comm: SimpleCommunicator, runner: R) -> Self {
        MpiExecutor {
            world: comm.duplicate(),
            comm: MpiComm::new(comm),
            group: ChainGroup::SINGLE,
            runner,
            workspace: Workspace::default(),
            _universe: None,
        }
    }

    /// The communicator wrapper of this rank's chain group.
    pub fn comm(&self) -> &MpiComm {
        &self.comm
    }
}

impl<R: BlockRunner> LikelihoodExecutor for MpiExecutor<R> {
    fn name(&self) -> &str {
        "mpi"
    }

    fn workers(&self) -> usize {
        self.world.size() as usize
    }

    fn threads_per_worker(&self) -> usize {
        self.runner.workers()
    }

    fn is_root(&self) -> bool {
        self.world.rank() == 0
    }

    fn filter(
        &mut self,
        problem: &FilterProblem,
        theta: &[f64],
        key: FilterKey,
        stop: Option<&AcceptTest>,
    ) -> Result<FilterOutput> {
        run_filter_on(
            &self.runner,
            &self.comm,
            problem,
            theta,
            key,
            stop,
            &mut self.workspace,
        )
    }

    fn any_worker(&mut self, flag: bool) -> Result<bool> {
        let mut out = 0u8;
        self.world
            .all_reduce_into(&u8::from(flag), &mut out, SystemOperation::max());
        Ok(out != 0)
    }

    fn check_consensus(&mut self, values: &[f64]) -> Result<()> {
        let bits: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let mut lo = vec![0u64; bits.len()];
        let mut hi = vec![0u64; bits.len()];
        self.comm
            .comm
            .all_reduce_into(&bits[..], &mut lo[..], SystemOperation::min());
        self.comm
            .comm
            .all_reduce_into(&bits[..], &mut hi[..], SystemOperation::max());
        if lo != hi {
            return Err(Error::Executor(
                "ranks disagree on the chain state (θ or log-likelihood): the run is not deterministic".into(),
            ));
        }
        Ok(())
    }

    fn max_over_workers(&mut self, x: f64) -> Result<f64> {
        let mut out = f64::NEG_INFINITY;
        self.world
            .all_reduce_into(&x, &mut out, SystemOperation::max());
        Ok(out)
    }

    fn sum_over_workers(&mut self, x: f64) -> Result<f64> {
        let mut out = 0.0;
        self.world
            .all_reduce_into(&x, &mut out, SystemOperation::sum());
        Ok(out)
    }

    fn chain_group(&self) -> ChainGroup {
        self.group
    }

    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let size = self.world.size() as usize;
        let len = Count::try_from(bytes.len())
            .map_err(|_| Error::Executor("a chain state of over 2^31 bytes".into()))?;
        let mut lens = vec![0 as Count; size];
        self.world.all_gather_into(&len, &mut lens[..]);
        let mut displs = Vec::with_capacity(size);
        let mut acc: Count = 0;
        for l in &lens {
            displs.push(acc);
            acc = acc
                .checked_add(*l)
                .ok_or_else(|| Error::Executor("chain states of over 2^31 bytes".into()))?;
        }
        let mut buf = vec![0u8; acc as usize];
        {
            let mut part = PartitionMut::new(&mut buf[..], &lens[..], &displs[..]);
            self.world.all_gather_varcount_into(bytes, &mut part);
        }
        Ok(lens
            .iter()
            .zip(&displs)
            .map(|(l, d)| buf[*d as usize..(*d + *l) as usize].to_vec())
            .collect())
    }
}

impl<R: BlockRunner + PassBatch> PassBatch for MpiExecutor<R> {
    /// Rank `r` of `W` runs requests `r, r + W, r + 2W, …` on its runner;
    /// the results are gathered on every rank and put back in order.
    fn log_likelihoods(
        &mut self,
        problem: &FilterProblem,
        requests: &[PassRequest<'_>],
    ) -> Result<Vec<f64>> {
        let size = self.world.size() as usize;
        let rank = self.world.rank() as usize;
        let mine: Vec<PassRequest<'_>> =
            requests.iter().skip(rank).step_by(size).cloned().collect();
        let local: Vec<u64> = self
            .runner
            .log_likelihoods(problem, &mine)?
            .into_iter()
            .map(f64::to_bits)
            .collect();
        let counts: Vec<Count> = (0..size)
            .map(|r| Count::try_from(requests.len().saturating_sub(r).div_ceil(size)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::Executor("over 2^31 filter passes in one batch".into()))?;
        let mut displs = Vec::with_capacity(size);
        let mut acc: Count = 0;
        for c in &counts {
            displs.push(acc);
            acc += c;
        }
        let mut buf = vec![0u64; requests.len()];
        {
            let mut part = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(&local[..], &mut part);
        }
        let mut out = vec![0.0; requests.len()];
        for r in 0..size {
            for (j, bits) in buf[displs[r] as usize..(displs[r] + counts[r]) as usize]
                .iter()
                .enumerate()
            {
                out[r + j * size] = f64::from_bits(*bits);
            }
        }
        Ok(out)
    }
}
