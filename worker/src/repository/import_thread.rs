//! The one thread that writes index entries into the local index caches.
//!
//! Why one: every thread allocates from a heap of its own (mimalloc), and an import's page
//! buffers, run wherever the blocking pool had a free thread, spread over eight of them and
//! stayed there: a worker importing ten million entries (`bench --index-blobs 10000000`)
//! peaked at 249–261 MiB, 240 MiB of it anonymous memory in the allocator's arena, against
//! 103 MiB with every import on one thread (the same time, 148 s: imports run one at a time
//! anyway, each a redb write transaction, which redb serialises).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

use crate::error::{RepositoryError, RepositoryResult};

type Job = Box<dyn FnOnce() + Send>;

/// Runs `work` on the import thread (started on first use) and waits for it.
///
/// # Errors
/// `work`'s error, or [`RepositoryError::LocalCache`] when the thread cannot be started or
/// `work` panicked.
pub async fn on_import_thread<T: Send + 'static>(
    work: impl FnOnce() -> RepositoryResult<T> + Send + 'static,
) -> RepositoryResult<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    // Sent in a statement of its own: the queue's lock is released before the wait.
    let sent = import_thread()?
        .lock()
        .map_err(|_| failed("its queue is poisoned"))?
        .send(job)
        .map_err(|_| failed("it has stopped"));
    sent?;
    result.await.map_err(|_| failed("an import panicked"))?
}

fn import_thread() -> RepositoryResult<&'static Mutex<Sender<Job>>> {
    static THREAD: OnceLock<Result<Mutex<Sender<Job>>, String>> = OnceLock::new();
    let started = THREAD.get_or_init(|| {
        let (sender, jobs) = channel::<Job>();
        std::thread::Builder::new()
            .name("bk-index-import".into())
            .spawn(move || {
                for job in jobs {
                    // A panicking import fails its own call (its result is dropped), not the
                    // imports after it.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map(|_| Mutex::new(sender))
            .map_err(|error| error.to_string())
    });
    started.as_ref().map_err(|error| failed(&format!("it cannot start: {error}")))
}

fn failed(why: &str) -> RepositoryError {
    RepositoryError::LocalCache(format!("the local index cache's import thread: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_imports_run_on_one_thread_and_a_panic_fails_only_its_own_call() {
        let first = on_import_thread(|| Ok(std::thread::current().id())).await.unwrap();
        let panicked = on_import_thread::<()>(|| panic!("a damaged import")).await;
        assert!(panicked.unwrap_err().to_string().contains("an import panicked"));
        let after = on_import_thread(|| Ok(std::thread::current().id())).await.unwrap();
        assert_eq!(first, after, "imports ran on different threads");
        assert_ne!(first, std::thread::current().id());
        let error = on_import_thread::<()>(|| Err(RepositoryError::LocalCache("full".into())));
        assert!(error.await.unwrap_err().to_string().contains("full"));
    }
}
