//! A pcmc cluster serves only its owner. With a scheduler and an executor
//! holding the cluster's secret, a stranger using a stock Ballista client
//! (the `ballista` crate, Ballista's gRPC protocol and Arrow Flight; no
//! pcmc code, no secret) tries to read a file through a CSV scan, write one
//! with `COPY … TO`, run pcmc's `SpillExec` with a pass directory outside
//! the work root, register (and poll for work) as an executor, fetch a
//! partition through Flight with a path-traversal ticket, and cancel a
//! running pcmc job or mark the executor stopped. Each is refused, nothing
//! is written or created, the running job's chain equals rayon's, and the
//! refusal is logged with the stranger's address. With the secret, plans
//! that are not pcmc's and paths outside the root are still refused. A
//! driver or cluster process without the secret, or with a wrong one,
//! stops with a clear message. Built with `--features ballista`.
#![cfg(feature = "ballista")]

mod common;

use common::{job, ok, pcmc};
use pcmc_ballista::auth::{ClusterToken, TOKEN_HEADER};
use pcmc_ballista::codec::PcmcPhysicalCodec;
use pcmc_ballista::deps::ballista::prelude::SessionContextExt;
use pcmc_ballista::deps::ballista_core::execution_plans::execute_physical_plan;
use pcmc_ballista::deps::ballista_core::extension::SessionConfigExt;
use pcmc_ballista::deps::ballista_core::serde::protobuf::{
    self as pb, scheduler_grpc_client::SchedulerGrpcClient,
};
use pcmc_ballista::deps::datafusion::prelude::{SessionConfig, SessionContext};
use pcmc_ballista::deps::datafusion_proto::protobuf::PhysicalPlanNode;
use pcmc_ballista::deps::futures::TryStreamExt;
use pcmc_ballista::deps::tonic::{Code, transport::Endpoint};
use pcmc_ballista::deps::{arrow_flight, prost::Message, tokio};
use pcmc_ballista::plans::{Layout, SpillExec, tokens};
use pcmc_cli::cluster::LocalCluster;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pcmc"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `f` until it holds, at most `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A session of a stock Ballista client; with `secret`, it carries it the
/// way pcmc's driver does.
async fn stock_session(url: &str, secret: Option<&ClusterToken>) -> Result<SessionContext, String> {
    match secret {
        None => SessionContext::remote(url).await.map_err(|e| e.to_string()),
        Some(t) => {
            let config = SessionConfig::new_with_ballista()
                .with_ballista_grpc_metadata(
                    [(TOKEN_HEADER.to_string(), t.expose().to_string())].into(),
                )
                .with_ballista_override_create_grpc_client_endpoint(t.endpoint_hook());
            let state = pcmc_ballista::deps::datafusion::execution::SessionStateBuilder::new()
                .with_config(config)
                .with_default_features()
                .build();
            SessionContext::remote_with_state(url, state)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// Runs `sql` through a stock client; the error text if it fails.
async fn stock_sql(
    url: &str,
    secret: Option<&ClusterToken>,
    setup: &str,
    sql: &str,
) -> Result<usize, String> {
    let ctx = stock_session(url, secret).await?;
    if !setup.is_empty() {
        ctx.sql(setup)
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
    }
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

fn fake_registration() -> pb::ExecutorRegistration {
    pb::ExecutorRegistration {
        id: "stranger".into(),
        host: Some("127.0.0.1".into()),
        port: 1,
        grpc_port: 2,
        specification: None,
        os_info: None,
        ..Default::default()
    }
}

/// A Flight ticket for Ballista's partition fetch with `job_id`.
fn ticket(job_id: &str) -> arrow_flight::Ticket {
    let fetch = pb::FetchPartition {
        job_id: job_id.into(),
        stage_id: 1,
        partition_id: 0,
        host: "127.0.0.1".into(),
        port: 1,
        ..Default::default()
    };
    let action = pb::Action {
        action_type: Some(pb::action::ActionType::FetchPartition(fetch)),
        settings: vec![],
    };
    arrow_flight::Ticket {
        ticket: action.encode_to_vec().into(),
    }
}

/// Submits pcmc's `SpillExec` writing under `pass_dir` as a job.
async fn submit_spill(
    url: &str,
    secret: Option<&ClusterToken>,
    pass_dir: &Path,
) -> Result<(), String> {
    let layout = Layout {
        pass_dir: pass_dir.to_path_buf(),
        species: vec!["prey".into(), "predator".into()],
        observed: vec![0],
        n: 10,
        parts: 1,
        heartbeat_ms: 1000,
    };
    let plan = Arc::new(SpillExec::new(
        tokens(1).map_err(|e| e.to_string())?,
        layout,
        0,
    ));
    let mut config = SessionConfig::new_with_ballista();
    if let Some(t) = secret {
        config = config
            .with_ballista_grpc_metadata(
                [(TOKEN_HEADER.to_string(), t.expose().to_string())].into(),
            )
            .with_ballista_override_create_grpc_client_endpoint(t.endpoint_hook());
    }
    let stream = execute_physical_plan::<PhysicalPlanNode>(
        url.to_string(),
        &config.ballista_config(),
        plan,
        &PcmcPhysicalCodec::default(),
        "stranger-session".into(),
        config,
    )
    .await
    .map_err(|e| e.to_string())?;
    stream
        .try_collect::<Vec<_>>()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn unauthenticated(r: &Result<impl std::fmt::Debug, String>) -> bool {
    r.as_ref()
        .err()
        .is_some_and(|e| e.contains("nauthenticated"))
}

#[test]
fn a_stranger_without_the_secret_reads_writes_creates_and_cancels_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The reference chain, on rayon.
    let rdir = tmp.path().join("rayon");
    let short = ["--iterations", "100", "--chains", "1"];
    let mut args = vec!["--threads", "2"];
    args.extend(short);
    ok(&pcmc()
        .arg("run")
        .arg(job("lv11-quick.toml"))
        .arg("--out")
        .arg(&rdir)
        .arg("--quiet")
        .args(&args)
        .output()
        .unwrap());
    let expected = std::fs::read(rdir.join("chain.csv")).unwrap();

    let cluster = LocalCluster::start(exe(), &tmp.path().join("cluster"), 1).unwrap();
    let url = cluster.address();
    let http = format!("http://127.0.0.1:{}", cluster.port());
    let owner = ClusterToken::load(Some(cluster.token_file())).unwrap();
    // The owner's private files, outside the work root.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let private = home.join("id_private.csv");
    std::fs::write(&private, "secret,value\nkey,42\n").unwrap();
    let written = home.join("written.csv");
    let outside_run = home.join("pcmc-1-2");
    std::fs::create_dir_all(&outside_run).unwrap();
    let outside_pass = outside_run.join("pass-000001");

    // The owner's run, in progress while the stranger tries everything.
    let dir = tmp.path().join("run");
    let mut run = pcmc();
    run.arg("run")
        .arg(job("lv11-quick.toml"))
        .arg("--out")
        .arg(&dir)
        .arg("--quiet")
        .args([
            "--executor",
            "dataflow",
            "--partitions",
            "2",
            "--checkpoint-every",
            "1",
        ])
        .args(cluster.run_flags())
        .args(short)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = run.spawn().unwrap();
    assert!(
        common::wait_for_progress(&mut child, &dir, 1, Duration::ZERO),
        "the owner's run did not start"
    );

    let rt = runtime();
    rt.block_on(async {
        // A CSV scan of the owner's file, and a COPY TO that would write one.
        let read = stock_sql(&url, None, &format!("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')", private.display()), "SELECT * FROM t").await;
        assert!(unauthenticated(&read), "CSV scan without the secret: {read:?}");
        let write = stock_sql(&url, None, "", &format!("COPY (VALUES (1, 2)) TO '{}' STORED AS CSV", written.display())).await;
        assert!(unauthenticated(&write), "COPY TO without the secret: {write:?}");
        // pcmc's own operator with a pass directory outside the root.
        let spill = submit_spill(&http, None, &outside_pass).await;
        assert!(unauthenticated(&spill), "SpillExec without the secret: {spill:?}");
        // Registering, polling for work and stopping executors, cancelling.
        let mut sched = SchedulerGrpcClient::connect(http.clone()).await.unwrap();
        let reg = sched
            .register_executor(pb::RegisterExecutorParams { metadata: Some(fake_registration()) })
            .await;
        assert_eq!(reg.unwrap_err().code(), Code::Unauthenticated);
        let poll = sched
            .poll_work(pb::PollWorkParams { metadata: Some(fake_registration()), num_free_vcores: 1, task_status: vec![] })
            .await;
        assert_eq!(poll.unwrap_err().code(), Code::Unauthenticated);
        let cancel = sched.cancel_job(pb::CancelJobParams { job_id: "aaaaaaa".into() }).await;
        assert_eq!(cancel.unwrap_err().code(), Code::Unauthenticated);
        let stopped = sched
            .executor_stopped(pb::ExecutorStoppedParams { executor_id: "any".into(), reason: "stranger".into() })
            .await;
        assert_eq!(stopped.unwrap_err().code(), Code::Unauthenticated);
    });
    // The executor's Flight port: a traversal ticket, without and with the secret.
    let mut flight_addr = None;
    assert!(eventually(Duration::from_secs(30), || {
        flight_addr = cluster.executor_address(0);
        flight_addr.is_some()
    }));
    let flight_url = format!("http://{}", flight_addr.unwrap());
    rt.block_on(async {
        use arrow_flight::flight_service_client::FlightServiceClient;
        let plain = Endpoint::from_shared(flight_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut stranger = FlightServiceClient::new(plain);
        let got = stranger.do_get(ticket("../../../../../etc")).await;
        assert_eq!(got.unwrap_err().code(), Code::Unauthenticated);
        let listed = stranger
            .list_flights(arrow_flight::Criteria::default())
            .await;
        assert_eq!(listed.unwrap_err().code(), Code::Unauthenticated);
        let channel = Endpoint::from_shared(flight_url.clone())
            .unwrap()
            .user_agent(owner.user_agent())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut with_secret = FlightServiceClient::new(channel);
        let got = with_secret
            .do_get(ticket(&format!("{}", home.display())))
            .await;
        assert_eq!(got.unwrap_err().code(), Code::PermissionDenied);
        let got = with_secret.do_get(ticket("../x")).await;
        assert_eq!(got.unwrap_err().code(), Code::PermissionDenied);
    });
    // The owner's run was not disturbed.
    let status = common::wait_child(&mut child, Duration::from_secs(600));
    assert!(
        status.success(),
        "the owner's run failed: {}",
        cluster.logs()
    );
    assert_eq!(
        std::fs::read(dir.join("chain.csv")).unwrap(),
        expected,
        "the owner's chain changed"
    );

    // With the secret (the owner's own mistakes, or a leaked plan): plans
    // that are not pcmc's, and paths outside the root, are refused too.
    rt.block_on(async {
        let write = stock_sql(&url, Some(&owner), "", &format!("COPY (VALUES (1, 2)) TO '{}' STORED AS CSV", written.display())).await;
        assert!(write.is_err(), "COPY TO with the secret ran: {write:?}");
        let read = stock_sql(&url, Some(&owner), &format!("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')", private.display()), "SELECT * FROM t").await;
        assert!(read.is_err(), "CSV scan with the secret ran: {read:?}");
        let spill = submit_spill(&http, Some(&owner), &outside_pass).await;
        let e = spill.expect_err("SpillExec outside the work root ran");
        assert!(e.contains("pass directory"), "{e}");
    });
    assert!(
        !written.exists(),
        "a file was written outside the work root"
    );
    assert!(
        !outside_pass.exists(),
        "a directory was created outside the work root"
    );
    assert_eq!(std::fs::read_dir(&outside_run).unwrap().count(), 0);
    // Each kind of refusal is in the logs, with the stranger's address.
    let logs = cluster.logs();
    assert!(
        logs.contains(
            "scheduler gRPC: refused a request without the cluster secret from 127.0.0.1"
        ),
        "{logs}"
    );
    assert!(
        logs.contains(
            "executor Flight: refused a request without the cluster secret from 127.0.0.1"
        ),
        "{logs}"
    );
    assert!(logs.contains("not a plain identifier"), "{logs}");
}

#[test]
fn processes_and_drivers_without_the_right_secret_stop_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // No secret: every process refuses to start (exit 2), saying how to make one.
    for args in [
        vec!["cluster", "scheduler", "--bind", "127.0.0.1:0"],
        vec![
            "cluster",
            "executor",
            "--scheduler",
            "127.0.0.1:1",
            "--work-dir",
            root.to_str().unwrap(),
        ],
        vec!["cluster", "wait", "--scheduler", "127.0.0.1:1"],
    ] {
        let out = pcmc()
            .args(&args)
            .env_remove("PCMC_CLUSTER_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("pcmc cluster token"), "{args:?}: {err}");
    }
    // A token file others can read is refused; a short secret too.
    let loose = tmp.path().join("loose");
    std::fs::write(&loose, "ab".repeat(32)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = pcmc()
        .args([
            "cluster",
            "scheduler",
            "--bind",
            "127.0.0.1:0",
            "--token-file",
        ])
        .arg(&loose)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let out = pcmc()
        .args(["cluster", "scheduler", "--bind", "127.0.0.1:0"])
        .env("PCMC_CLUSTER_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // `pcmc cluster token` makes 64 hexadecimal digits, different each time.
    let a = pcmc().args(["cluster", "token"]).output().unwrap();
    let b = pcmc().args(["cluster", "token"]).output().unwrap();
    let (a, b) = (
        String::from_utf8_lossy(&a.stdout).trim().to_string(),
        String::from_utf8_lossy(&b.stdout).trim().to_string(),
    );
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);

    // A driver without the secret, and one with a wrong secret.
    let cluster = LocalCluster::start(exe(), &tmp.path().join("cluster"), 1).unwrap();
    let base = |dir: &Path| {
        let mut c = pcmc();
        c.arg("run")
            .arg(job("lv11-quick.toml"))
            .arg("--out")
            .arg(dir)
            .arg("--quiet")
            .args([
                "--executor",
                "dataflow",
                "--iterations",
                "2",
                "--chains",
                "1",
            ])
            .args(["--scheduler", &cluster.address(), "--work-dir"])
            .arg(cluster.work_root())
            .env_remove("PCMC_CLUSTER_TOKEN");
        c
    };
    let out = base(&tmp.path().join("none")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pcmc cluster token"));
    let start = Instant::now();
    let out = base(&tmp.path().join("wrong"))
        .env("PCMC_CLUSTER_TOKEN", "ff".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused this run's cluster secret"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "took {:?}",
        start.elapsed()
    );
}
