//! Background jobs: one small mechanism that runs each job on exactly one node at a time.
//!
//! A job is a name, a period and a piece of work. Every node runs a loop per job that
//! asks the metadata store for the job's lease ([`Leases`]), for `lease` (the
//! `job_lease_seconds` setting) at a time, and renews it every third of that. Only the
//! node holding the lease runs the work, when the period has passed since the job last
//! ran on any node (the store keeps that time with the lease, so the schedule survives a
//! change of node). A node that cannot renew stops the work at once; one that dies
//! leaves its lease to expire, and another node takes the job over within `lease` and a
//! third; one that shuts down gracefully releases its leases, and another node takes
//! over at its next try (a third of `lease`). Each node names itself with a holder id
//! made once per process (`host-pid-random`), logged at start and in every job's lines.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_store::{Lease, Leases};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

/// A job's work: one run, ending with what it did.
pub type Work = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// What a run did: a sentence (logged), how many things it acted on and whether part of
/// it failed (both counted in [`crate::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub said: String,
    pub items: u64,
    pub failed: bool,
}

impl Outcome {
    pub fn new(said: String, items: u64, failed: bool) -> Outcome {
        Outcome {
            said,
            items,
            failed,
        }
    }
}

/// A background job.
#[derive(Clone)]
pub struct Job {
    /// Unique across the deployment: the lease's key.
    pub name: &'static str,
    /// How long after a run (started on any node) the next one is due.
    pub period: Duration,
    pub work: Work,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, period: Duration, work: F) -> Job
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        Job {
            name,
            period,
            work: Arc::new(move || Box::pin(work())),
        }
    }
}

/// This process's name as a lease holder: the host, the process id and random
/// characters (so a restarted process with a reused pid is a new holder).
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let random = crate::ids::unique_id("");
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// The running job loops of this node.
pub struct Runner {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    holder: String,
}

impl Runner {
    /// Start a loop for each job, holding leases as `holder` for `lease` at a time.
    /// (Generic over the store so an `Arc<dyn Store>` serves as it is.)
    pub fn start<L: Leases + ?Sized>(
        leases: Arc<L>,
        holder: String,
        lease: Duration,
        jobs: Vec<Job>,
    ) -> Runner {
        let (stop, watching) = watch::channel(false);
        let tasks = jobs
            .into_iter()
            .map(|job| {
                let looping = JobLoop {
                    leases: leases.clone(),
                    holder: holder.clone(),
                    lease,
                    job,
                    held: false,
                    ran_here: None,
                };
                tokio::spawn(looping.run(watching.clone()))
            })
            .collect();
        Runner {
            stop,
            tasks,
            holder,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Stop every job (work under way is dropped) and release the leases held, waiting
    /// at most `within` for the store to answer.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if timeout(within, all).await.is_err() {
            tracing::warn!(
                holder = %self.holder,
                "job leases were not all released in time; other nodes take them over when they expire"
            );
        }
    }

    /// Stop at once without releasing anything, as a process that dies would (tests).
    pub fn abandon(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct JobLoop<L: ?Sized> {
    leases: Arc<L>,
    holder: String,
    lease: Duration,
    job: Job,
    /// Whether this node held the lease at the last answer.
    held: bool,
    /// When this node last started the work (counted too, should recording a run in
    /// the store fail, so the work is not repeated at once).
    ran_here: Option<i64>,
}

impl<L: Leases + ?Sized> JobLoop<L> {
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let asked = Instant::now();
            let mut wake = asked + self.renew_every();
            if let Some(lease) = self.renew().await {
                let due_in = lease.last_run_at.max(self.ran_here).map_or(0, |t| {
                    t.saturating_add(millis(self.job.period)) - crate::ids::now_ms()
                });
                if due_in <= 0 {
                    self.work_while_held(asked, &mut stop).await;
                    continue; // renew right after, then wait for the next run
                }
                wake = wake.min(Instant::now() + Duration::from_millis(due_in as u64));
            }
            tokio::select! {
                _ = sleep_until(wake) => {}
                _ = stop.changed() => {}
            }
        }
        if self.held {
            match self.leases.release_lease(self.job.name, &self.holder).await {
                Ok(_) => {
                    tracing::info!(job = self.job.name, holder = %self.holder, "released the job's lease")
                }
                Err(e) => tracing::warn!(job = self.job.name, holder = %self.holder, error = %e,
                    "releasing the job's lease failed; another node takes it over when it expires"),
            }
        }
    }

    /// Take or renew the lease; logs when it is taken or lost.
    async fn renew(&mut self) -> Option<Lease> {
        let name = self.job.name;
        let ask =
            self.leases
                .try_lease(name, &self.holder, crate::ids::now_ms(), millis(self.lease));
        let answer = match timeout(self.renew_every(), ask).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!(job = name, holder = %self.holder, error = %e, "asking for the job's lease failed");
                None
            }
            Err(_) => {
                tracing::warn!(job = name, holder = %self.holder,
                    "the metadata store did not answer for the job's lease within {:?}", self.renew_every());
                None
            }
        };
        match (&answer, self.held) {
            (Some(_), false) => {
                tracing::info!(job = name, holder = %self.holder, "took the job's lease: this node runs it")
            }
            (None, true) => {
                tracing::warn!(job = name, holder = %self.holder, "lost the job's lease: this node stops running it")
            }
            _ => {}
        }
        self.held = answer.is_some();
        answer
    }

    /// One run of the work, renewing the lease alongside; the work is dropped if a
    /// renewal fails or the node stops.
    async fn work_while_held(&mut self, mut asked: Instant, stop: &mut watch::Receiver<bool>) {
        let started = crate::ids::now_ms();
        self.ran_here = Some(started);
        let work = (self.job.work)();
        tokio::pin!(work);
        loop {
            tokio::select! {
                outcome = &mut work => {
                    let took = crate::ids::now_ms() - started;
                    let Outcome { said, items, failed } = outcome;
                    if failed {
                        tracing::warn!(job = self.job.name, holder = %self.holder, took_ms = took, "job ran: {said}");
                    } else {
                        tracing::info!(job = self.job.name, holder = %self.holder, took_ms = took, "job ran: {said}");
                    }
                    let m = crate::metrics::metrics();
                    let job = self.job.name;
                    let result = if failed { "failed" } else { "ok" };
                    m.job_runs.get_or_create(&crate::metrics::JobResultLabels { job, result }).inc();
                    m.job_duration
                        .get_or_create(&crate::metrics::JobLabels { job })
                        .observe(took.max(0) as f64 / 1000.0);
                    m.job_items.get_or_create(&crate::metrics::JobLabels { job }).inc_by(items);
                    if let Err(e) = self.leases.record_run(self.job.name, &self.holder, started).await {
                        tracing::warn!(job = self.job.name, error = %e, "recording the job's run failed");
                    }
                    return;
                }
                _ = sleep_until(asked + self.renew_every()) => {
                    asked = Instant::now();
                    if self.renew().await.is_none() {
                        tracing::warn!(job = self.job.name, holder = %self.holder, "job stopped part-way: its lease could not be renewed");
                        return;
                    }
                }
                _ = stop.changed() => {
                    tracing::info!(job = self.job.name, holder = %self.holder, "job stopped part-way: the node is shutting down");
                    return;
                }
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_store::SqliteStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const LEASE: Duration = Duration::from_millis(900);

    /// A job that counts its runs on this node.
    fn counting(period: Duration) -> (Job, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let job = Job::new("count", period, move || {
            let counted = counted.clone();
            async move {
                Outcome::new(
                    format!("run {}", counted.fetch_add(1, Ordering::SeqCst) + 1),
                    1,
                    false,
                )
            }
        });
        (job, runs)
    }

    /// Poll `ok` until it holds, failing the test after `within`.
    async fn until<F, Fut>(what: &str, within: Duration, mut ok: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !ok().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Who holds the unexpired lease on the test job.
    async fn holder_of(store: &SqliteStore) -> Option<String> {
        let lease = store.lease("count").await.unwrap()?;
        (lease.expires_at > crate::ids::now_ms()).then_some(lease.holder)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_node_runs_and_another_takes_over() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let period = Duration::from_millis(20);
        let (job_a, runs_a) = counting(period);
        let (job_b, runs_b) = counting(period);
        let a = Runner::start(store.clone(), "node-a".into(), LEASE, vec![job_a]);
        let b = Runner::start(store.clone(), "node-b".into(), LEASE, vec![job_b]);
        until(
            "the job ran five times",
            Duration::from_secs(10),
            || async { runs_a.load(Ordering::SeqCst) + runs_b.load(Ordering::SeqCst) >= 5 },
        )
        .await;
        let (first, second, first_runs, second_runs) = if runs_a.load(Ordering::SeqCst) > 0 {
            (a, b, runs_a, runs_b)
        } else {
            (b, a, runs_b, runs_a)
        };
        assert_eq!(
            second_runs.load(Ordering::SeqCst),
            0,
            "only the holder runs the job"
        );
        let first_name = first.holder().to_string();
        assert_eq!(holder_of(&store).await, Some(first_name));

        // A graceful stop releases the lease: the other node takes over at its next try,
        // long before the lease would have expired.
        first.stop(Duration::from_secs(5)).await;
        let released = store.lease("count").await.unwrap().unwrap();
        assert_eq!(released.expires_at, 0, "released on stop");
        let stopped_runs = first_runs.load(Ordering::SeqCst);
        until("the other node ran the job", LEASE, || async {
            second_runs.load(Ordering::SeqCst) > 0
        })
        .await;
        assert_eq!(first_runs.load(Ordering::SeqCst), stopped_runs);

        // A node that dies keeps its lease until it expires; then another node takes over.
        let second_name = second.holder().to_string();
        second.abandon();
        assert_eq!(holder_of(&store).await, Some(second_name));
        let (job_c, runs_c) = counting(period);
        let c = Runner::start(store.clone(), "node-c".into(), LEASE, vec![job_c]);
        until("node-c ran the job", LEASE * 3, || async {
            runs_c.load(Ordering::SeqCst) > 0
        })
        .await;
        assert_eq!(holder_of(&store).await.as_deref(), Some("node-c"));
        c.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_schedule_carries_over_between_nodes() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let hour = Duration::from_secs(3600);
        let (job_a, runs_a) = counting(hour);
        let a = Runner::start(store.clone(), "node-a".into(), LEASE, vec![job_a]);
        until("the run was recorded", Duration::from_secs(5), || async {
            let lease = store.lease("count").await.unwrap();
            lease.is_some_and(|l| l.last_run_at.is_some())
        })
        .await;
        assert_eq!(runs_a.load(Ordering::SeqCst), 1);
        a.stop(Duration::from_secs(5)).await;
        let (job_b, runs_b) = counting(hour);
        let b = Runner::start(store.clone(), "node-b".into(), LEASE, vec![job_b]);
        until("node-b took the lease", Duration::from_secs(5), || async {
            holder_of(&store).await.as_deref() == Some("node-b")
        })
        .await;
        assert_eq!(
            runs_b.load(Ordering::SeqCst),
            0,
            "not due for an hour, whoever holds it"
        );
        b.stop(Duration::from_secs(5)).await;
    }

    /// Counts its drops: the work future was cancelled (or finished).
    struct DropCount(Arc<AtomicUsize>);
    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_stops_when_the_lease_is_lost() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let started = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (s, d, f) = (started.clone(), dropped.clone(), finished.clone());
        let job = Job::new("count", Duration::from_millis(10), move || {
            let (s, d, f) = (s.clone(), d.clone(), f.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                let _guard = DropCount(d);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                f.fetch_add(1, Ordering::SeqCst);
                Outcome::new(String::new(), 0, false)
            }
        });
        let a = Runner::start(store.clone(), "node-a".into(), LEASE, vec![job]);
        until("the work started", Duration::from_secs(5), || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await;
        // Another node takes the lease (as it would after node-a stalled past expiry).
        store.release_lease("count", "node-a").await.unwrap();
        let now = crate::ids::now_ms();
        store
            .try_lease("count", "node-b", now, 60_000)
            .await
            .unwrap()
            .unwrap();
        // node-a's next renewal fails: the work is dropped unfinished.
        until("node-a dropped the work", LEASE, || async {
            dropped.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(finished.load(Ordering::SeqCst), 0);
        assert_eq!(started.load(Ordering::SeqCst), 1);
        a.stop(Duration::from_secs(5)).await;
        let lease = store.lease("count").await.unwrap().unwrap();
        assert_eq!(
            lease.holder, "node-b",
            "a node that lost the lease does not release it"
        );
        assert!(lease.expires_at > now, "node-b's lease stands");
    }
}
