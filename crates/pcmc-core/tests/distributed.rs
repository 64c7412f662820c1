//! The distributed filter (`run_filter_on`) with in-process "ranks" (threads
//! exchanging data through shared memory) gives the serial result bit for
//! bit, for rank counts that do not divide the particle count. This checks
//! the algorithm the MPI executor runs, without MPI.
use pcmc_core::filter::{
    Collective, FilterKey, FilterProblem, SerialRunner, Workspace, run_filter_on,
};
use pcmc_core::prelude::*;
use pcmc_core::workloads::{lv11, lv12_small};
use pcmc_core::{LikelihoodExecutor, serial};
use std::sync::{Arc, Barrier, Mutex};

struct Hub {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u64>>>,
    matrix: Mutex<Vec<Vec<Vec<u64>>>>,
}

struct ThreadComm {
    hub: Arc<Hub>,
    rank: usize,
    size: usize,
}

impl Collective for ThreadComm {
    fn size(&self) -> usize {
        self.size
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn max_f64(&self, x: f64) -> pcmc_core::Result<f64> {
        let all = self.all_gather_u64(&[x.to_bits()])?;
        Ok(all
            .iter()
            .map(|b| f64::from_bits(*b))
            .fold(f64::NEG_INFINITY, f64::max))
    }
    fn all_gather_u64(&self, local: &[u64]) -> pcmc_core::Result<Vec<u64>> {
        self.hub.slots.lock().unwrap()[self.rank] = local.to_vec();
        self.hub.barrier.wait();
        let out = self.hub.slots.lock().unwrap().concat();
        self.hub.barrier.wait();
        Ok(out)
    }
    fn all_to_all(&self, send: Vec<Vec<u64>>) -> pcmc_core::Result<Vec<Vec<u64>>> {
        self.hub.matrix.lock().unwrap()[self.rank] = send;
        self.hub.barrier.wait();
        let out = {
            let m = self.hub.matrix.lock().unwrap();
            (0..self.size).map(|s| m[s][self.rank].clone()).collect()
        };
        self.hub.barrier.wait();
        Ok(out)
    }
}

fn distributed(
    problem: &FilterProblem,
    theta: &[f64],
    key: FilterKey,
    size: usize,
) -> Vec<pcmc_core::filter::FilterOutput> {
    let hub = Arc::new(Hub {
        barrier: Barrier::new(size),
        slots: Mutex::new(vec![Vec::new(); size]),
        matrix: Mutex::new(vec![Vec::new(); size]),
    });
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                let comm = ThreadComm {
                    hub: hub.clone(),
                    rank,
                    size,
                };
                s.spawn(move || {
                    let mut ws = Workspace::default();
                    run_filter_on(&SerialRunner, &comm, problem, theta, key, None, &mut ws).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn with_scheme(p: &FilterProblem, scheme: Resampling) -> FilterProblem {
    let mut cfg = p.config().clone();
    cfg.resampling = scheme;
    p.with_config(cfg).unwrap()
}

#[test]
fn ranks_reproduce_the_serial_filter() {
    let cases = [
        (lv11(101, 1), vec![1.0, 0.005, 0.6]),
        (lv12_small(37, 2), vec![10.0, 0.005, 0.0025, 6.0, 3.0]),
    ];
    for (base, theta) in cases {
        for scheme in [Resampling::Systematic, Resampling::Stratified] {
            let p = with_scheme(&base, scheme);
            for it in 0..3 {
                let key = FilterKey {
                    seed: 8,
                    chain: 0,
                    iteration: it,
                };
                let reference = serial().log_likelihood(&p, &theta, key).unwrap();
                assert!(reference.loglik.is_finite());
                for size in [1, 2, 3, 5] {
                    for out in distributed(&p, &theta, key, size) {
                        assert_eq!(
                            out.loglik.to_bits(),
                            reference.loglik.to_bits(),
                            "{scheme:?} {size} ranks"
                        );
                        assert_eq!(out.ess, reference.ess);
                        assert_eq!(out.counters, reference.counters);
                    }
                }
            }
        }
    }
}

#[test]
fn more_ranks_than_particles_still_work() {
    let p = lv11(3, 4);
    let theta = [1.0, 0.005, 0.6];
    let key = FilterKey {
        seed: 1,
        chain: 0,
        iteration: 0,
    };
    let reference = serial().log_likelihood(&p, &theta, key).unwrap();
    for out in distributed(&p, &theta, key, 5) {
        assert_eq!(out.loglik.to_bits(), reference.loglik.to_bits());
    }
}

#[test]
fn undistributable_schemes_are_refused_on_several_ranks() {
    let p = with_scheme(&lv11(20, 1), Resampling::Multinomial);
    let hub = Arc::new(Hub {
        barrier: Barrier::new(1),
        slots: Mutex::new(vec![Vec::new(); 2]),
        matrix: Mutex::new(vec![Vec::new(); 2]),
    });
    let comm = ThreadComm {
        hub,
        rank: 0,
        size: 2,
    };
    let e = run_filter_on(
        &SerialRunner,
        &comm,
        &p,
        &[1.0, 0.005, 0.6],
        FilterKey {
            seed: 1,
            chain: 0,
            iteration: 0,
        },
        None,
        &mut Workspace::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("systematic or stratified"), "{e}");
}
